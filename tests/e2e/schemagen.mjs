// Random JSON Schemas for the structured-output property test (structured.test.mjs) and the
// compile-time benchmark: `node tests/e2e/schemagen.mjs N [SEED]` prints N of them, one per
// line (kiln model bench-engine --schemas FILE reads that).
import { fileURLToPath } from 'node:url';

// A small deterministic generator (the property test must be reproducible).
export function rng(seed) {
  let s = BigInt(seed) | 1n;
  return () => {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    return Number(s >> 33n) / 2 ** 31;
  };
}

// A random schema: nesting, enums, arrays with min/max items, optional fields, anyOf, const.
export function randomSchema(r, depth) {
  const pick = (a) => a[Math.floor(r() * a.length)];
  const k = Math.floor(r() * (depth > 0 ? 10 : 7));
  switch (k) {
    case 0: return { type: 'string', maxLength: 1 + Math.floor(r() * 8) };
    case 1: {
      const lo = Math.floor(r() * 20) - 10;
      return { type: 'integer', minimum: lo, maximum: lo + Math.floor(r() * 100) };
    }
    case 2: return { type: 'boolean' };
    case 3: return { enum: ['red', 'green', 7, null, true].slice(0, 1 + Math.floor(r() * 5)) };
    case 4: return { const: pick(['k', 3, false]) };
    case 5: return { type: 'null' };
    case 6: return { type: 'string', enum: ['a b', 'é', 'x"y'].slice(0, 1 + Math.floor(r() * 3)) };
    case 7: {
      const min = Math.floor(r() * 3);
      return { type: 'array', items: randomSchema(r, depth - 1), minItems: min, maxItems: min + Math.floor(r() * 3) };
    }
    case 8: return { anyOf: [randomSchema(r, depth - 1), randomSchema(r, depth - 1)] };
    default: {
      const n = 1 + Math.floor(r() * 4), properties = {}, required = [];
      for (let i = 0; i < n; i++) {
        properties[`p${i}`] = randomSchema(r, depth - 1);
        if (r() < 0.6) required.push(`p${i}`);
      }
      return { type: 'object', properties, required, additionalProperties: false };
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const n = Number(process.argv[2] || 200), r = rng(Number(process.argv[3] || 2026));
  for (let i = 0; i < n; i++) console.log(JSON.stringify(randomSchema(r, 3)));
}
