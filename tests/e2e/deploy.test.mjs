// deploy/: every Kubernetes manifest against the Kubernetes OpenAPI schemas (k8s_schema.mjs:
// types, required fields, unknown fields), the Inference Extension objects against the
// fields of its CRDs, the kustomizations, the references between objects (selectors, ports,
// names, the HPA metric and the adapter rule, grace period vs drain), what `kiln bench
// --recommend` writes, the Dockerfile's shape, and kiln-gateway-watch reloading a real
// kiln gateway when its file changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { checkObject, knownKinds } from './k8s_schema.mjs';
import { root, kilnBin, startServer, stopServer } from './serverutil.mjs';
import { freePort, waitFor } from './gwutil.mjs';

const deploy = path.join(root, 'deploy');
const yamlFiles = fs.readdirSync(deploy, { recursive: true }).map(String)
  .filter((f) => /\.ya?ml$/.test(f)).sort();

function load(rel) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(deploy, rel), 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, [], `${rel}: YAML errors`);
  return docs.map((d) => d.toJS()).filter((o) => o);
}
const objects = yamlFiles.filter((f) => !f.endsWith('kustomization.yaml'))
  .flatMap((f) => load(f).map((o) => ({ file: f, o })));
const find = (kind, name) => objects.find(({ o }) => o.kind === kind && o.metadata.name === name)?.o;

// The v1 InferencePool and v1alpha2 InferenceObjective fields (the extension's CRDs as of
// its v1.5 release; no package ships their schemas).
const intPort = (n) => Number.isInteger(n) && n >= 1 && n <= 65535;
function only(obj, fields, at, errs) {
  for (const k of Object.keys(obj ?? {})) if (!fields.includes(k)) errs.push(`${at}.${k}: unknown field`);
}
function checkInferenceObject(o) {
  const errs = [];
  only(o, ['apiVersion', 'kind', 'metadata', 'spec'], o.kind, errs);
  const s = o.spec ?? {};
  if (o.kind === 'InferencePool' && o.apiVersion === 'inference.networking.k8s.io/v1') {
    only(s, ['selector', 'targetPorts', 'appProtocol', 'endpointPickerRef'], 'spec', errs);
    only(s.selector, ['matchLabels'], 'spec.selector', errs);
    if (!s.selector?.matchLabels || !Object.keys(s.selector.matchLabels).length) errs.push('spec.selector.matchLabels: required');
    if (!Array.isArray(s.targetPorts) || s.targetPorts.length < 1 || s.targetPorts.length > 8) errs.push('spec.targetPorts: 1 to 8 ports');
    for (const p of s.targetPorts ?? []) { only(p, ['number'], 'spec.targetPorts[]', errs); if (!intPort(p.number)) errs.push('spec.targetPorts[].number: a port'); }
    if (s.appProtocol !== undefined && !['http', 'kubernetes.io/h2c'].includes(s.appProtocol)) errs.push('spec.appProtocol: http or kubernetes.io/h2c');
    const e = s.endpointPickerRef ?? {};
    only(e, ['group', 'kind', 'name', 'port', 'failureMode'], 'spec.endpointPickerRef', errs);
    if (typeof e.name !== 'string' || !e.name) errs.push('spec.endpointPickerRef.name: required');
    if ((e.kind ?? 'Service') === 'Service' && !intPort(e.port?.number)) errs.push('spec.endpointPickerRef.port.number: required for a Service');
    if (e.failureMode !== undefined && !['FailOpen', 'FailClose'].includes(e.failureMode)) errs.push('spec.endpointPickerRef.failureMode');
  } else if (o.kind === 'InferenceObjective' && o.apiVersion === 'inference.networking.x-k8s.io/v1alpha2') {
    only(s, ['priority', 'poolRef'], 'spec', errs);
    if (s.priority !== undefined && !Number.isInteger(s.priority)) errs.push('spec.priority: an integer');
    only(s.poolRef, ['group', 'kind', 'name'], 'spec.poolRef', errs);
    if (typeof s.poolRef?.name !== 'string') errs.push('spec.poolRef.name: required');
  } else {
    errs.push(`${o.apiVersion} ${o.kind}: unknown`);
  }
  return errs;
}

async function validate(o) {
  if (/^inference\.networking/.test(o.apiVersion)) return checkInferenceObject(o);
  return checkObject(o);
}

test('the schema check itself catches a wrong type, a missing field and a misspelt one', async () => {
  const d = structuredClone(find('Deployment', 'kiln-serve'));
  d.spec.template.spec.containers[0].readinesProbe = d.spec.template.spec.containers[0].readinessProbe;
  d.spec.template.spec.containers[0].ports[0].containerPort = '8080';
  delete d.spec.selector;
  const errs = (await validate(d)).join('\n');
  assert.match(errs, /readinesProbe: unknown field of V1Container/);
  assert.match(errs, /containerPort must be integer/);
  assert.match(errs, /must have required property '?selector'?/);
  const p = structuredClone(find('InferencePool', 'kiln-serve'));
  p.spec.targetPort = p.spec.targetPorts;
  delete p.spec.targetPorts;
  assert.match((await validate(p)).join('\n'), /spec.targetPort: unknown field/);
});

test('every manifest under deploy/ validates', async () => {
  assert.ok(objects.length >= 12, `${objects.length} objects`);
  for (const { file, o } of objects) {
    assert.ok(knownKinds.includes(`${o.apiVersion}/${o.kind}`) || /^inference\.networking/.test(o.apiVersion),
      `${file}: ${o.apiVersion} ${o.kind}`);
    assert.deepEqual(await validate(o), [], file);
  }
});

test('each kustomization lists existing resources and every manifest of its folder', () => {
  const dirs = yamlFiles.filter((f) => path.basename(f) === 'kustomization.yaml').map(path.dirname);
  assert.ok(dirs.includes('.') && dirs.includes('serve') && dirs.includes('gateway'));
  for (const dir of dirs) {
    const [k] = load(path.join(dir, 'kustomization.yaml'));
    assert.equal(k.kind, 'Kustomization');
    for (const r of k.resources) {
      const p = path.join(deploy, dir, r);
      assert.ok(fs.existsSync(p), `${dir}: ${r}`);
      if (fs.statSync(p).isDirectory()) assert.ok(fs.existsSync(path.join(p, 'kustomization.yaml')), r);
    }
    const here = fs.readdirSync(path.join(deploy, dir)).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    for (const f of here) assert.ok(k.resources.includes(f), `${dir}/${f} is not in its kustomization`);
  }
});

test('references between the objects hold', () => {
  const serve = find('Deployment', 'kiln-serve');
  const pod = serve.spec.template;
  const labels = pod.metadata.labels;
  const matches = (sel) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  assert.ok(matches(serve.spec.selector.matchLabels));
  assert.ok(matches(find('Service', 'kiln-serve').spec.selector));
  assert.ok(matches(find('PodMonitor', 'kiln-serve').spec.selector.matchLabels));
  const pool = find('InferencePool', 'kiln-serve');
  assert.ok(matches(pool.spec.selector.matchLabels));
  const c = pod.spec.containers[0];
  const port = c.ports.find((p) => p.name === 'http').containerPort;
  assert.equal(pool.spec.targetPorts[0].number, port);
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    assert.equal(c[probe].httpGet.path, '/health', probe);
    assert.equal(c[probe].httpGet.port, 'http', probe);
  }
  assert.equal(c.args[c.args.indexOf('--port') + 1], String(port));
  // a drain ends before SIGKILL: preStop sleep + --drain-timeout < grace period
  const drain = Number(c.args[c.args.indexOf('--drain-timeout') + 1]);
  const preStop = Number(c.lifecycle.preStop.exec.command[1]);
  assert.ok(preStop + drain < pod.spec.terminationGracePeriodSeconds);
  // a draining pod (503) is not restarted by liveness before the drain ends
  assert.ok(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold > drain);
  // the init container pulls the model the server then reads offline from the same volume
  const init = pod.spec.initContainers[0];
  assert.deepEqual(init.args, ['pull', c.args[c.args.indexOf('-m') + 1]]);
  const env = (x, n) => x.env.find((e) => e.name === n)?.value;
  assert.equal(env(init, 'HF_HUB_CACHE'), env(c, 'HF_HUB_CACHE'));
  assert.equal(env(c, 'HF_HUB_OFFLINE'), '1');
  assert.equal(init.volumeMounts[0].name, c.volumeMounts[0].name);
  // the threads match the CPUs, the memory request covers 2 x the model + the KV cache
  assert.equal(c.args[c.args.indexOf('-t') + 1], c.resources.requests.cpu);
  // HPA -> Deployment, metric -> adapter rule
  const hpa = find('HorizontalPodAutoscaler', 'kiln-serve');
  assert.equal(hpa.spec.scaleTargetRef.name, 'kiln-serve');
  const metric = hpa.spec.metrics[0].pods.metric.name;
  assert.equal(metric, 'vllm:num_requests_waiting');
  const rules = YAML.parse(find('ConfigMap', 'prometheus-adapter-kiln').data['config.yaml']).rules;
  assert.ok(rules.some((r) => r.name.as === metric && r.seriesQuery.startsWith(metric)));
  // the gateway reads the ConfigMap's file and routes the model the server serves
  const gw = find('Deployment', 'kiln-gateway').spec.template.spec;
  assert.equal(gw.volumes[0].configMap.name, 'kiln-gateway');
  const cfg = JSON.parse(find('ConfigMap', 'kiln-gateway').data['gateway.json']);
  assert.equal(cfg.models[0].name, c.args[c.args.indexOf('--served-model-name') + 1]);
  assert.equal(gw.containers[0].command[1], `${gw.containers[0].volumeMounts[0].mountPath}/gateway.json`);
  assert.equal(cfg.listen.port, gw.containers[0].ports[0].containerPort);
});

test('the gateway ConfigMap is a config kiln gateway accepts', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-deploy-'));
  const cfg = JSON.parse(find('ConfigMap', 'kiln-gateway').data['gateway.json']);
  cfg.listen = { host: '127.0.0.1', port: await freePort() };
  fs.writeFileSync(path.join(dir, 'gw.json'), JSON.stringify(cfg));
  const p = spawn(kilnBin, ['gateway', '-c', path.join(dir, 'gw.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  p.stderr.on('data', (d) => { log += d; });
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${cfg.listen.port}/v1/models`)).status === 200);
    const m = await (await fetch(`http://127.0.0.1:${cfg.listen.port}/v1/models`)).json();
    assert.equal(m.data[0].id, cfg.models[0].name);
  } finally {
    p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.doesNotMatch(log, /kiln: .*gw\.json/);
});

test('the Dockerfile: multi-stage, Debian 12 slim runtime with the listed packages, non-root, a model volume', () => {
  const df = fs.readFileSync(path.join(deploy, 'Dockerfile'), 'utf8');
  const froms = [...df.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  assert.deepEqual(froms, ['debian:12', 'debian:12-slim']);
  assert.match(df, /COPY deploy\/runtime-packages\.txt/);
  assert.match(df, /^USER 10001:10001$/m);
  assert.match(df, /^VOLUME \["\/models"\]$/m);
  assert.match(df, /^ENV HF_HUB_CACHE=\/models\/hub$/m);
  for (const m of df.matchAll(/^COPY (?!--from)(\S+)/gm)) assert.ok(fs.existsSync(path.join(root, m[1])), m[1]);
  // the build stage installs the -dev package of every runtime library
  const runtime = fs.readFileSync(path.join(deploy, 'runtime-packages.txt'), 'utf8').split('\n')
    .filter((l) => l && !l.startsWith('#'));
  assert.ok(runtime.includes('libcurl4') && runtime.includes('ca-certificates'));
  for (const dev of ['libevent-dev', 'libjansson-dev', 'libpcre2-dev', 'libxxhash-dev', 'libutf8proc-dev',
    'libcurl4-openssl-dev', 'libssl-dev']) assert.match(df, new RegExp(dev));
  // what the runtime binary links is covered by the list (checked for real by make deploy-check)
  const ldd = spawnSync('ldd', [kilnBin]).stdout.toString();
  for (const lib of ['libevent-2.1', 'libjansson', 'libpcre2-8', 'libxxhash', 'libutf8proc', 'libcurl', 'libcrypto']) {
    assert.match(ldd, new RegExp(lib), lib);
  }
});

test('kiln bench --recommend writes an HPA (and adapter rules) that validate', async () => {
  const s = await startServer(['-t', '1']);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-rec-'));
  try {
    const r = spawnSync(kilnBin, ['bench', '--url', s.url, '--sweep', '1,2', '--step-requests', '4',
      '--input-len', '8', '--output-len', '4', '--slo-ttft', '60000', '--slo-tpot', '60000',
      '--recommend', '--target-rate', '5', '--out', out, '--quiet'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const files = fs.readdirSync(out).filter((f) => /\.ya?ml$/.test(f));
    assert.ok(files.includes('hpa.yaml'));
    for (const f of files) {
      for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(out, f), 'utf8'))) {
        assert.deepEqual(d.errors, [], f);
        const o = d.toJS();
        if (o?.apiVersion) assert.deepEqual(await validate(o), [], f);
        else assert.ok(Array.isArray(o?.rules), `${f}: neither a Kubernetes object nor adapter rules`);
      }
    }
    const hpa = YAML.parse(fs.readFileSync(path.join(out, 'hpa.yaml'), 'utf8'));
    assert.equal(hpa.spec.metrics[0].pods.metric.name, 'vllm:num_requests_waiting');
  } finally {
    await stopServer(s);
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('kiln-gateway-watch reloads a real kiln gateway when its file changes, passes SIGTERM on', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-watch-'));
  const port = await freePort();
  const file = path.join(dir, 'gw.json');
  const cfg = (name) => JSON.stringify({ listen: { host: '127.0.0.1', port },
    models: [{ name, pools: [{ endpoints: [{ url: 'http://127.0.0.1:9' }] }] }] });
  fs.writeFileSync(file, cfg('first'));
  const p = spawn(path.join(deploy, 'gateway', 'kiln-gateway-watch'), [file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KILN_WATCH_INTERVAL: '0.2', PATH: `${path.dirname(kilnBin)}:${process.env.PATH}` } });
  let log = '';
  p.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => p.on('exit', (code, sig) => resolve({ code, sig })));
  const models = async () => (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()).data.map((m) => m.id);
  try {
    await waitFor(async () => (await models())[0] === 'first');
    // a ConfigMap update replaces the file (a symlink swap); a rename does the same here
    fs.writeFileSync(`${file}.new`, cfg('second'));
    fs.renameSync(`${file}.new`, file);
    await waitFor(async () => (await models())[0] === 'second', 10000);
    assert.match(log, /changed: reloading \(SIGHUP\)/);
    fs.writeFileSync(file, '{"models": 3}'); // refused: the gateway keeps the last good one
    await waitFor(() => /models: expected/.test(log) || /kiln: .*gw\.json/.test(log), 10000);
    assert.deepEqual(await models(), ['second']);
    p.kill('SIGTERM');
    const e = await exited;
    assert.equal(e.code, 0, log);
  } finally {
    p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
