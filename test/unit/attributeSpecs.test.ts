// The attribute names and values (src/shared/attributeSpecs.ts) against the spans the bridge
// builds from real captured events, and against the written span model (docs/span-model.md, and
// the README's mentions): every attribute and value documented, nothing documented that does not
// exist.
import { readFileSync } from 'node:fs';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import type {
  AttemptOutcome,
  FinishedTask,
  TaskFinalState,
  TaskRecord,
} from '../../src/assemble/TaskRecord.js';
import type { BeatRun } from '../../src/beat/BeatRun.js';
import { beatRunSpan } from '../../src/beat/beatRunSpan.js';
import { TaskResources } from '../../src/export/TaskResources.js';
import { taskSpans, UNKNOWN_TASK_NAME } from '../../src/export/taskSpans.js';
import {
  ATTEMPT_OUTCOMES,
  ATTR,
  ATTRIBUTE_SPECS,
  type AttributeCarrier,
  type AttributeSpec,
  type IncompleteReason,
  INCOMPLETE_REASONS,
  TASK_SPAN_STATES,
} from '../../src/shared/attributeSpecs.js';
import { METRIC_SPECS } from '../../src/shared/metricSpecs.js';
import { amqpCompanionFixtureMessages, amqpFixtureMessages } from '../support/fixtures.js';
import { SPAN_OPTIONS, assemble, assemblerEventsOf, decodeAll } from '../support/pipeline.js';

// The value lists are the assembler's types, spelled once more where every layer can read them:
// `npm run check` fails when they part.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameOutcomes: Same<AttemptOutcome, (typeof ATTEMPT_OUTCOMES)[number]> = true;
const sameIncomplete: Same<
  Exclude<FinishedTask['completeness'], 'complete'>,
  IncompleteReason
> = true;
const finalStatesListed: Same<
  Extract<(typeof TASK_SPAN_STATES)[number], TaskFinalState>,
  TaskFinalState
> = true;

const resources = new TaskResources({}, 'celery', []);
const options = { ...SPAN_OPTIONS, resources };
const run = assemble(assemblerEventsOf(decodeAll(amqpFixtureMessages()).events), {}, options);
const companion = assemble(
  assemblerEventsOf(decodeAll(amqpCompanionFixtureMessages()).events),
  {},
  options,
);

function gaveUp(completeness: FinishedTask['completeness']): ReadableSpan[] {
  const record: TaskRecord = {
    id: `0c5e2cde-8a43-4b1c-9c57-2b3b2b6e8d1${completeness.length % 10}`,
    name: 'proj.slow',
    receivedTimes: [1795747656.1, 1795747656.15],
    receivedAt: 1795747656.1,
    lastEventAt: 1795747656.2,
    attempts: [{ startedAt: 1795747656.2, hostname: 'w1@vm' }, { endedAt: 1795747656.3 }],
    workerHostname: 'w1@vm',
    delivery: completeness === 'lost' ? 1 : undefined,
  };
  return taskSpans({ record, completeness }, options);
}

const beatRun: BeatRun = {
  app: 'proj',
  entry: 'every-minute',
  task: 'proj.tick',
  taskId: 'beat-task-1',
  outcome: 'missed',
  missedReason: 'send_error',
  detail: 'OperationalError',
  scheduledAt: 1795747600,
  sentAt: 1795747600.5,
  startedAt: 1795747601,
  endedAt: 1795747602,
  lateness: 0.5,
  span: { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16) },
  previous: { traceId: 'c'.repeat(32), spanId: 'd'.repeat(16) },
};

const taskAndAttemptSpans = [
  ...run.spans,
  ...companion.spans,
  ...INCOMPLETE_REASONS.flatMap(gaveUp),
];
const beatSpans = [
  beatRunSpan(beatRun, {
    resource: SPAN_OPTIONS.resource,
    scope: { name: 'x' },
    maxAttributeLength: 1000,
  }),
];

/** Attribute name -> carrier -> values seen. */
function observed(): Map<string, Map<AttributeCarrier, Set<unknown>>> {
  const seen = new Map<string, Map<AttributeCarrier, Set<unknown>>>();
  const note = (carrier: AttributeCarrier, attributes: object | undefined): void => {
    for (const [key, value] of Object.entries(attributes ?? {})) {
      let byCarrier = seen.get(key);
      if (byCarrier === undefined)
        seen.set(key, (byCarrier = new Map<AttributeCarrier, Set<unknown>>()));
      let values = byCarrier.get(carrier);
      if (values === undefined) byCarrier.set(carrier, (values = new Set<unknown>()));
      values.add(value);
    }
  };
  for (const span of taskAndAttemptSpans) {
    const isAttempt = span.name.startsWith('run/');
    note(isAttempt ? 'attempt span' : 'task span', span.attributes);
    note('resource', span.resource.attributes);
    for (const event of span.events) {
      if (event.name === 'exception') note('exception event', event.attributes);
      else if (event.name === 'task-revoked') note('task-revoked event', event.attributes);
      // Other events are custom task events: their fields are the task's own.
    }
    for (const link of span.links) note('link', link.attributes);
  }
  for (const span of beatSpans) {
    note('beat run span', span.attributes);
    for (const link of span.links) note('link', link.attributes);
  }
  return seen;
}

const specOf = (name: string): AttributeSpec | undefined =>
  ATTRIBUTE_SPECS.find((spec) => spec.name === name);

describe('attribute declarations', () => {
  it('are unique, and ATTR spells each', () => {
    const names = ATTRIBUTE_SPECS.map((spec) => spec.name);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(Object.values(ATTR))).toEqual(new Set(names));
    expect([sameOutcomes, sameIncomplete, finalStatesListed]).toEqual([true, true, true]);
  });

  it('name every attribute a span, event, link or resource carries, where it is carried', () => {
    const seen = observed();
    expect(seen.size).toBeGreaterThan(30);
    for (const [name, byCarrier] of seen) {
      const spec = specOf(name);
      expect(spec, `${name} is declared`).toBeDefined();
      for (const carrier of byCarrier.keys()) expect(spec?.on, name).toContain(carrier);
    }
  });

  it('list every value of an enumerated attribute the spans carry', () => {
    for (const [name, byCarrier] of observed()) {
      const spec = specOf(name);
      // An open attribute (error.type: the exception class) also has values not listed.
      if (spec?.values === undefined || spec.value !== undefined) continue;
      for (const values of byCarrier.values()) {
        for (const value of values) expect(spec.values, name).toContain(String(value));
      }
    }
    // Every reason a span goes out incomplete is one of them.
    const incomplete = observed().get(ATTR.TASK_INCOMPLETE)?.get('task span');
    expect([...(incomplete ?? [])].sort()).toEqual([...INCOMPLETE_REASONS].sort());
  });
});

describe('the written span model', () => {
  const doc = readFileSync(new URL('../../docs/span-model.md', import.meta.url), 'utf8');
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  // The hand-written task span table (the generated attribute reference is checked as generated).
  const start = doc.indexOf('## Task span');
  const taskSpanSection = doc.slice(start, doc.indexOf('\n## ', start + 1));
  const metricNames = new Set<string>(Object.values(METRIC_SPECS).map((spec) => spec.name));

  /** Backticked attribute names (`name` or `name=value`) in the text. */
  function mentioned(text: string): { name: string; value?: string }[] {
    const out: { name: string; value?: string }[] = [];
    for (const [, token] of text.matchAll(/`([^`\s]+)`/g)) {
      const [name = '', value] = (token ?? '').split('=');
      if (!/^(celery|messaging|error|exception|service|host|telemetry)\.[a-z_.]+$/.test(name))
        continue;
      if (metricNames.has(name) || name === UNKNOWN_TASK_NAME) continue;
      out.push(value === undefined ? { name } : { name, value });
    }
    return out;
  }

  it('names no attribute or value that does not exist', () => {
    const all = [...mentioned(doc), ...mentioned(readme)];
    expect(all.length).toBeGreaterThan(30);
    for (const { name, value } of all) {
      const spec = specOf(name);
      expect(spec, `${name} is documented but not declared`).toBeDefined();
      if (value !== undefined && spec?.value === undefined)
        expect(spec?.values, name).toContain(value);
    }
  });

  it("lists every value of a task span attribute's closed set in the task span table", () => {
    expect(start).toBeGreaterThan(-1);
    const rows = taskSpanSection.split('\n').filter((line) => line.startsWith('| `'));
    let checked = 0;
    for (const spec of ATTRIBUTE_SPECS) {
      if (spec.values === undefined || spec.value !== undefined || !spec.on.includes('task span'))
        continue;
      const row = rows.find((line) => (line.split('|')[1] ?? '').includes(`\`${spec.name}\``));
      expect(row, `task span row for ${spec.name}`).toBeDefined();
      for (const value of spec.values) expect(row, spec.name).toContain(`\`${value}\``);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(4);
  });
});
