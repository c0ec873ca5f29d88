/**
 * The import rules `npm run check` enforces: no cycle, and imports that only flow forward along
 * the pipeline (source -> decode -> assemble -> export, then what consumes its output). A stage
 * may import the stages before it and the shared layers; never one after it. See
 * docs/architecture.md.
 */
const stages = [
  ['shared', '^src/(shared|log)/|^src/version\\.ts$'],
  ['brokers', '^src/brokers/'],
  ['decode', '^src/decode/'],
  ['assemble', '^src/assemble/'],
  ['export', '^src/export/'],
  // The counters every stage declares an interface for, gathered in one place.
  ['telemetry', '^src/telemetry/'],
  ['state', '^src/state/'],
  ['beat', '^src/beat/'],
  ['metrics', '^src/metrics/'],
  ['diagnose', '^src/diagnose/'],
  ['http', '^src/http/'],
  // The edge: reads flags and environment into the typed options each stage declares.
  ['config', '^src/config/'],
  ['bridge', '^src/Bridge\\.ts$|^src/main\\.ts$'],
];

const againstTheFlow = stages.slice(0, -1).map(([name, path], index) => ({
  name: `${name}-imports-a-later-stage`,
  comment: `${name} may import only the stages before it: ${stages
    .slice(0, index)
    .map(([earlier]) => earlier)
    .join(', ')}`,
  severity: 'error',
  // A worker thread's script is the composition root of its thread, as main.ts is of the
  // process: it may wire stages together.
  from: { path, pathNot: 'Thread\\.ts$' },
  to: {
    path: stages
      .slice(index + 1)
      .map(([, later]) => later)
      .join('|'),
  },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle ties modules that should be changeable one at a time.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'one-broker-does-not-import-the-other',
      severity: 'error',
      from: { path: '^src/brokers/(amqp|redis)/' },
      to: { path: '^src/brokers/(amqp|redis)/', pathNot: '^src/brokers/$1/' },
    },
    ...againstTheFlow,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
