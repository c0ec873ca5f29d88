// `npm run docs`: writes the tables made from the declarations (metric specs, attribute specs)
// between their markers in the docs, formatted as `npm run format` would. Run after a build.
import { readFile, writeFile } from 'node:fs/promises';
import { stdout } from 'node:process';
import { URL } from 'node:url';
import * as prettier from 'prettier';
import { GENERATED_DOC_FILES, withGeneratedSections } from '../dist/shared/generatedDocs.js';

const root = new URL('../', import.meta.url);
for (const path of GENERATED_DOC_FILES) {
  const url = new URL(path, root);
  let text;
  try {
    text = await readFile(url, 'utf8');
  } catch {
    continue;
  }
  const config = (await prettier.resolveConfig(url)) ?? {};
  const written = await prettier.format(withGeneratedSections(text), {
    ...config,
    filepath: url.pathname,
  });
  if (written !== text) {
    await writeFile(url, written);
    stdout.write(`wrote ${path}\n`);
  }
}
