// Validates Kubernetes objects offline against the Kubernetes OpenAPI schemas, from two npm
// packages generated from them:
//   - kubernetes-models (+ @kubernetes-models/prometheus-operator): JSON-schema validators
//     (types, formats, required fields, enums) for each kind;
//   - @kubernetes/client-node's models: every field of every type, which catches what the
//     validators let through (an unknown or misspelt field: `readinesProbe`).
// checkObject(obj) returns a list of "path: problem" strings (empty when valid).
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const modelsDir = path.join(path.dirname(require.resolve('@kubernetes/client-node/package.json')),
  'dist', 'gen', 'models');

// apiVersion/kind -> [kubernetes-models module, class, client-node type or null]
const kinds = {
  'apps/v1/Deployment': ['kubernetes-models/apps/v1', 'Deployment', 'V1Deployment'],
  'v1/Service': ['kubernetes-models/v1', 'Service', 'V1Service'],
  'v1/ConfigMap': ['kubernetes-models/v1', 'ConfigMap', 'V1ConfigMap'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['kubernetes-models/autoscaling/v2',
    'HorizontalPodAutoscaler', 'V2HorizontalPodAutoscaler'],
  'monitoring.coreos.com/v1/PodMonitor': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
    'PodMonitor', null],
  'monitoring.coreos.com/v1/PrometheusRule': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
    'PrometheusRule', null],
};
export const knownKinds = Object.keys(kinds);

const classes = new Map();
async function modelClass(type) {
  if (!classes.has(type)) {
    const m = await import(path.join(modelsDir, `${type}.js`));
    classes.set(type, m[type]);
  }
  return classes.get(type);
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Walks value against client-node's type names, collecting unknown fields and wrong types.
async function walk(value, type, at, errs) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (!Array.isArray(value)) { errs.push(`${at}: expected a list`); return; }
    for (let i = 0; i < value.length; i++) await walk(value[i], m[1], `${at}[${i}]`, errs);
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (!isObj(value)) { errs.push(`${at}: expected a map`); return; }
    for (const [k, v] of Object.entries(value)) await walk(v, m[1], `${at}.${k}`, errs);
    return;
  }
  switch (type) {
    case 'string': if (typeof value !== 'string') errs.push(`${at}: expected a string`); return;
    case 'number': if (typeof value !== 'number') errs.push(`${at}: expected a number`); return;
    case 'boolean': if (typeof value !== 'boolean') errs.push(`${at}: expected a boolean`); return;
    case 'IntOrString':
      if (typeof value !== 'string' && !Number.isInteger(value)) errs.push(`${at}: expected an int or a string`);
      return;
    case 'Date': case 'any': return;
    default: break;
  }
  const cls = await modelClass(type);
  if (!isObj(value)) { errs.push(`${at}: expected an object (${type})`); return; }
  const fields = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) errs.push(`${at}.${k}: unknown field of ${type}`);
    else await walk(v, fields.get(k), `${at}.${k}`, errs);
  }
}

export async function checkObject(obj) {
  const key = `${obj?.apiVersion}/${obj?.kind}`;
  const k = kinds[key];
  if (!k) return [`${key}: no schema for this kind`];
  const errs = [];
  const mod = await import(k[0]);
  try {
    new mod[k[1]](obj).validate();
  } catch (e) {
    errs.push(`${obj.kind} ${obj.metadata?.name}: ${e.message}`);
  }
  if (k[2]) await walk(obj, k[2], `${obj.kind}`, errs);
  return errs;
}
