import { ATTRIBUTE_SPECS } from './attributeSpecs.js';
import { markdownTable } from './metricsTable.js';

/**
 * The attribute reference of docs/span-model.md: every attribute on spans, span events, links
 * and resources, where it is found and the values the bridge sets, as `npm run docs` writes it
 * between `<!-- attributes:begin -->` and `<!-- attributes:end -->`. Metric attributes are in the
 * metrics reference.
 */
export function attributesTable(): string {
  const rows = ATTRIBUTE_SPECS.flatMap((spec) => {
    const on = spec.on.filter((carrier) => carrier !== 'metrics');
    if (on.length === 0) return [];
    const values = [
      ...(spec.values === undefined ? [] : [spec.values.map((v) => `\`${v}\``).join(', ')]),
      ...(spec.value === undefined ? [] : [spec.value]),
    ];
    return [[`\`${spec.name}\``, on.join(', '), values.join('; or ')]];
  });
  return markdownTable(['attribute', 'on', 'values'], rows);
}
