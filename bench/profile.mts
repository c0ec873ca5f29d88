// Reads a V8 .cpuprofile (`node --cpu-prof`) and says where the time went: self time per function,
// and per pipeline stage, each sample charged to the nearest frame whose script names a stage
// (so JSON.parse called from the decoder counts as decode, not as "native").
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** Sampled wall time, ms. */
  readonly totalMs: number;
  /** Time not idle, ms. */
  readonly busyMs: number;
  readonly stages: { stage: string; ms: number; percentOfBusy: number }[];
  readonly topSelf: { fn: string; stage: string; ms: number; percentOfBusy: number }[];
}

/** Stage of one frame by its script, or undefined when the frame says nothing (builtins). */
function stageOf(frame: CallFrame): string | undefined {
  const { url, functionName } = frame;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'V8/native (program)';
  if (url === '') return undefined;
  if (/\/dist\/decode\//.test(url)) return 'decode';
  if (/\/dist\/source\//.test(url)) return 'source (amqp/redis adapter)';
  if (/\/dist\/assemble\/deterministicIds/.test(url)) return 'span building (ids: sha256)';
  if (/\/dist\/assemble\/parsePythonException/.test(url)) return 'span building (exceptions)';
  if (/\/dist\/assemble\//.test(url)) return 'assemble';
  if (/\/dist\/export\/(taskSpans|truncate)/.test(url)) return 'span building';
  if (/\/dist\/export\/SpanExportQueue/.test(url)) return 'export queue';
  if (/\/dist\/export\/(ProtobufSpanSerializer|ProtoWriter)/.test(url)) return 'OTLP serialisation';
  if (/\/dist\/(telemetry|metrics)\//.test(url)) return 'telemetry/metrics';
  if (/\/dist\//.test(url)) return 'bridge (other)';
  if (/otlp-transformer|protobufjs/.test(url)) return 'OTLP serialisation';
  if (/sdk-metrics|exporter-prometheus|exporter-metrics/.test(url)) return 'metrics (OTel SDK)';
  if (/otlp-exporter-base|exporter-trace-otlp|sdk-trace-base|@opentelemetry/.test(url)) {
    return 'export (OTLP HTTP)';
  }
  if (/amqplib|bitsyntax|buffer-more-ints/.test(url)) return 'amqplib';
  if (/ioredis|redis-parser|denque/.test(url)) return 'ioredis';
  if (/^node:(_http|http)/.test(url)) return 'export (OTLP HTTP)';
  if (/^node:(net|internal\/stream|internal\/streams|stream)/.test(url)) return 'socket I/O';
  if (/^node:/.test(url)) return undefined;
  return 'other';
}

export function summariseProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const stageCache = new Map<number, string>();
  const stageFor = (id: number): string => {
    const cached = stageCache.get(id);
    if (cached !== undefined) return cached;
    let current: number | undefined = id;
    let stage: string | undefined;
    while (current !== undefined && stage === undefined) {
      const node = byId.get(current);
      if (node === undefined) break;
      stage = stageOf(node.callFrame);
      current = parent.get(current);
    }
    const result = stage ?? 'node internals';
    stageCache.set(id, result);
    return result;
  };
  const selfByFn = new Map<string, { ms: number; stage: string }>();
  const byStage = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, index) => {
    const ms = (profile.timeDeltas[index] ?? 0) / 1000;
    totalMs += ms;
    const node = byId.get(id);
    if (node === undefined) return;
    const stage = stageFor(id);
    byStage.set(stage, (byStage.get(stage) ?? 0) + ms);
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '' : ` ${shortUrl(url)}:${lineNumber + 1}`;
    const key = `${functionName === '' ? '(anonymous)' : functionName}${where}`;
    const entry = selfByFn.get(key) ?? { ms: 0, stage };
    entry.ms += ms;
    selfByFn.set(key, entry);
  });
  const busyMs = totalMs - (byStage.get('idle') ?? 0);
  const pct = (ms: number): number => Math.round((1000 * ms) / Math.max(busyMs, 1)) / 10;
  return {
    file,
    totalMs: Math.round(totalMs),
    busyMs: Math.round(busyMs),
    stages: [...byStage.entries()]
      .filter(([stage]) => stage !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([stage, ms]) => ({ stage, ms: Math.round(ms), percentOfBusy: pct(ms) })),
    topSelf: [...selfByFn.entries()]
      .filter(([fn]) => !fn.startsWith('(idle)'))
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, top)
      .map(([fn, { ms, stage }]) => ({ fn, stage, ms: Math.round(ms), percentOfBusy: pct(ms) })),
  };
}

function shortUrl(url: string): string {
  const nodeModules = url.lastIndexOf('/node_modules/');
  if (nodeModules !== -1) return url.slice(nodeModules + '/node_modules/'.length);
  const dist = url.lastIndexOf('/dist/');
  if (dist !== -1) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}
