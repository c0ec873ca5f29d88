import { attributesTable } from './attributesTable.js';
import { metricsTable } from './metricsTable.js';

/** A part of the docs made from the declarations, between `<!-- NAME:begin -->` and `:end`. */
export interface GeneratedSection {
  readonly marker: string;
  readonly render: () => string;
}

export const GENERATED_SECTIONS: readonly GeneratedSection[] = [
  { marker: 'metrics', render: metricsTable },
  { marker: 'attributes', render: attributesTable },
];

/** The pages that may hold generated sections (paths from the repository root). */
export const GENERATED_DOC_FILES = ['README.md', 'docs/metrics.md', 'docs/span-model.md'];

/**
 * `text` with every generated section it holds written anew (unformatted: the caller runs
 * prettier on the page, as `npm run format` would).
 */
export function withGeneratedSections(text: string): string {
  let out = text;
  for (const section of GENERATED_SECTIONS) {
    const begin = `<!-- ${section.marker}:begin -->`;
    const end = `<!-- ${section.marker}:end -->`;
    let from = 0;
    for (;;) {
      const start = out.indexOf(begin, from);
      if (start === -1) break;
      const stop = out.indexOf(end, start);
      if (stop === -1) throw new Error(`${begin} has no ${end} after it: add one`);
      const generated = `${begin}\n\n${section.render()}\n\n`;
      out = out.slice(0, start) + generated + out.slice(stop);
      from = start + generated.length + end.length;
    }
  }
  return out;
}
