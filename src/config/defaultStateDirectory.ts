import { isAbsolute, join } from 'node:path';

/** Who the bridge runs as, for {@link defaultStateDirectory}. */
export interface StateDirectoryContext {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The process's user id; undefined where there is none (Windows). */
  readonly uid: number | undefined;
  /** The user's home directory (os.homedir()). */
  readonly home: string;
}

/**
 * Where `--state-file auto` keeps its file: a directory of the bridge's own, never a shared
 * world-writable one like /tmp (where another local user can plant or pre-create files). The
 * conventions of a daemon, first match wins:
 * 1. `$STATE_DIRECTORY`: systemd sets it from the unit's `StateDirectory=` (systemd.exec(5));
 *    the first entry when it lists several, separated by colons;
 * 2. `$XDG_STATE_HOME/celery-otel-bridge` (XDG Base Directory Specification);
 * 3. `/var/lib/celery-otel-bridge` for root (FHS: variable state of a system service);
 * 4. `~/.local/state/celery-otel-bridge` for any other user (the XDG default of XDG_STATE_HOME).
 * Relative values are ignored, as the XDG specification asks. The state file creates the
 * directory with mode 0700 when it is missing.
 */
export function defaultStateDirectory({ env, uid, home }: StateDirectoryContext): string {
  const systemd = (env['STATE_DIRECTORY'] ?? '').split(':')[0] ?? '';
  if (isAbsolute(systemd)) return systemd;
  const xdg = env['XDG_STATE_HOME'] ?? '';
  if (isAbsolute(xdg)) return join(xdg, 'celery-otel-bridge');
  if (uid === 0) return '/var/lib/celery-otel-bridge';
  return join(home, '.local', 'state', 'celery-otel-bridge');
}
