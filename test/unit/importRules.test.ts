import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '../..');
const depcruise = join(repo, 'node_modules/.bin/depcruise');
const trees: string[] = [];

/** The import rules of `npm run deps`, run on a small tree of the same layout. */
async function violations(files: Record<string, string>): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'import-rules-'));
  trees.push(root);
  copyFileSync(join(repo, '.dependency-cruiser.cjs'), join(root, '.dependency-cruiser.cjs'));
  writeFileSync(
    join(root, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }),
  );
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  try {
    await run(depcruise, ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    return '';
  } catch (error) {
    // Colours anyway where a CI variable asks for them: compare the text alone.
    // eslint-disable-next-line no-control-regex
    return ((error as { stdout?: string }).stdout ?? String(error)).replace(/\x1b\[[0-9;]*m/g, '');
  }
}

afterAll(() => {
  for (const root of trees) rmSync(root, { recursive: true, force: true });
});

describe('import rules (npm run deps)', () => {
  it('pass on imports that flow forward', async () => {
    expect(
      await violations({
        'src/shared/a.ts': 'export const a = 1;\n',
        'src/decode/b.ts': "import { a } from '../shared/a.js';\nexport const b = a;\n",
        'src/export/c.ts': "import { b } from '../decode/b.js';\nexport const c = b;\n",
      }),
    ).toBe('');
  }, 30_000);

  it('fail on an import against the flow, a cycle, and one broker importing the other', async () => {
    const found = await violations({
      'src/export/late.ts': 'export const late = 1;\n',
      'src/decode/early.ts': "import { late } from '../export/late.js';\nexport const e = late;\n",
      'src/assemble/x.ts': "import { y } from './y.js';\nexport const x = () => y;\n",
      'src/assemble/y.ts': "import { x } from './x.js';\nexport const y = () => x;\n",
      'src/brokers/redis/r.ts': 'export const r = 1;\n',
      'src/brokers/amqp/a.ts': "import { r } from '../redis/r.js';\nexport const a = r;\n",
    });
    expect(found).toContain(
      'decode-imports-a-later-stage: src/decode/early.ts → src/export/late.ts',
    );
    expect(found).toContain('no-circular');
    expect(found).toContain('one-broker-does-not-import-the-other');
  }, 30_000);
});
