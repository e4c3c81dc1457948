// STAND-IN (test fixture, never shipped): Prisma's native query-engine binary, which prisma-client-py
// starts and talks to over HTTP. The native binary cannot be downloaded on the test machines, and no
// package ships it. This file offers the binary's HTTP API (GET /status, POST /, POST
// /transaction/start, /transaction/<id>/commit|rollback, GET /metrics) and hands every query to the
// query engine Prisma publishes as WebAssembly (@prisma/query-engine-wasm, built from the same engine
// commit as the CLI that prisma 0.15.0 pins), which runs the engine's own query logic against the real
// Postgres through @prisma/adapter-pg. What is stood in for is the transport only:
//   - prisma-client-py sends Prisma's GraphQL protocol; the WebAssembly engine speaks the JSON
//     protocol. translate() rewrites the subset prisma-client-py renders (one root field, arguments of
//     JSON literals, selections) and untag() turns the JSON protocol's typed results
//     ({"$type": "DateTime", "value": ...}) back into the plain values the GraphQL protocol returns.
//   - adapter-pg refuses Postgres columns of types `name`, `name[]`, `char` and `oid` (LiteLLM reads
//     pg_views); they are read as text / bigint.
// Schema migrations are not the engine's job (the schema engine does them); tests/harness/litellm_db.sh
// applies LiteLLM's migration files with psql instead. docs/testing.md says what this replaces.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindAdapter } from '@prisma/driver-adapter-utils';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, 'node_modules');

function argValue(name) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

// ---------------------------------------------------------------------------------------------
// GraphQL (the subset prisma-client-py renders) -> a tree of plain values
// ---------------------------------------------------------------------------------------------
const TOKEN = /\s+|,|#[^\n]*|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|([{}()[\]:])/gy;

export function tokenize(text) {
  const tokens = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(text);
    if (!match || match.index !== start) {
      throw new Error(`stand-in: cannot read the query at offset ${start}: ${text.slice(start, start + 40)}`);
    }
    if (match[1] !== undefined) tokens.push({ kind: 'value', value: JSON.parse(match[1]) });
    else if (match[2] !== undefined) tokens.push({ kind: 'value', value: Number(match[2]) });
    else if (match[3] !== undefined) tokens.push({ kind: 'name', value: match[3] });
    else if (match[4] !== undefined) tokens.push({ kind: 'punct', value: match[4] });
  }
  return tokens;
}

class Reader {
  constructor(tokens) { this.tokens = tokens; this.at = 0; }
  peek() { return this.tokens[this.at]; }
  next() {
    const token = this.tokens[this.at++];
    if (!token) throw new Error('stand-in: the query ended early');
    return token;
  }
  expect(value) {
    const token = this.next();
    if (token.value !== value || token.kind === 'value') {
      throw new Error(`stand-in: expected ${value}, found ${JSON.stringify(token.value)}`);
    }
  }
  isPunct(value) { const token = this.peek(); return token && token.kind === 'punct' && token.value === value; }

  value() {
    const token = this.next();
    if (token.kind === 'value') return token.value;
    if (token.kind === 'name') {
      if (token.value === 'true') return true;
      if (token.value === 'false') return false;
      if (token.value === 'null') return null;
      return token.value; // an enum member
    }
    if (token.value === '{') {
      const object = {};
      while (!this.isPunct('}')) {
        const key = this.next().value;
        this.expect(':');
        object[key] = this.value();
      }
      this.next();
      return object;
    }
    if (token.value === '[') {
      const list = [];
      while (!this.isPunct(']')) list.push(this.value());
      this.next();
      return list;
    }
    throw new Error(`stand-in: unexpected ${token.value}`);
  }

  // field := (alias ':')? name ('(' (name ':' value)* ')')? ('{' field* '}')?
  field() {
    let name = this.next().value;
    let alias;
    if (this.isPunct(':')) { this.next(); alias = name; name = this.next().value; }
    let args;
    if (this.isPunct('(')) {
      this.next();
      args = {};
      while (!this.isPunct(')')) {
        const key = this.next().value;
        this.expect(':');
        args[key] = this.value();
      }
      this.next();
    }
    let selection;
    if (this.isPunct('{')) {
      this.next();
      selection = [];
      while (!this.isPunct('}')) selection.push(this.field());
      this.next();
    }
    return { alias, name, args, selection };
  }
}

export function parse(text) {
  const reader = new Reader(tokenize(text));
  const operation = reader.next().value;
  if (operation !== 'query' && operation !== 'mutation') {
    throw new Error(`stand-in: a query or a mutation was expected, found ${operation}`);
  }
  reader.expect('{');
  const root = reader.field();
  reader.expect('}');
  if (reader.peek()) throw new Error('stand-in: one root field was expected');
  return root;
}

// ---------------------------------------------------------------------------------------------
// GraphQL protocol -> JSON protocol, and back for results
// ---------------------------------------------------------------------------------------------
// Longest first: "findUnique" must not match as "find..." of another action.
const ACTIONS = ['findUnique', 'findFirst', 'findMany', 'createOne', 'createMany', 'updateOne', 'updateMany',
  'deleteOne', 'deleteMany', 'upsertOne', 'aggregate', 'groupBy'];
const RAW = new Set(['executeRaw', 'queryRaw']);

function selection(fields) {
  const out = {};
  for (const field of fields || []) {
    if (!field.args && !field.selection) { out[field.name] = true; continue; }
    const nested = {};
    if (field.args) nested.arguments = field.args;
    nested.selection = selection(field.selection);
    out[field.name] = nested;
  }
  return out;
}

// The datamodel's models: name -> { json: Set of Json fields, relations: field -> model }.
export function readModels(datamodel) {
  const models = new Map();
  for (const block of datamodel.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)) models.set(block[1], block[2]);
  const out = new Map();
  for (const [name, body] of models) {
    const json = new Set();
    const relations = new Map();
    for (const line of body.split('\n')) {
      const field = line.trim().match(/^(\w+)\s+(\w+)(\[\])?\??/);
      if (!field) continue;
      if (field[2] === 'Json') json.add(field[1]);
      else if (models.has(field[2])) relations.set(field[1], field[2]);
    }
    out.set(name, { json, relations });
  }
  return out;
}

// prisma-client-py sends a Json field's value as a string of JSON text, which the GraphQL protocol
// parses; the JSON protocol would store the string itself, so it gets the protocol's Json tag.
function tagJson(value, model, models) {
  if (Array.isArray(value)) return value.map((item) => tagJson(item, model, models));
  if (!value || typeof value !== 'object') return value;
  const shape = models.get(model);
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    if (shape && shape.json.has(key)) out[key] = jsonValue(item);
    else if (shape && shape.relations.has(key)) out[key] = tagJson(item, shape.relations.get(key), models);
    else out[key] = tagJson(item, model, models);
  }
  return out;
}

function jsonValue(item) {
  if (typeof item === 'string') return { $type: 'Json', value: item };
  if (item && typeof item === 'object' && !Array.isArray(item)) {
    // a filter or an update operation on the field: {equals: "..."}, {set: "..."}
    return Object.fromEntries(Object.entries(item).map(([op, v]) => [op, typeof v === 'string' ? { $type: 'Json', value: v } : v]));
  }
  return item;
}

export function translate(graphql, models) {
  const root = parse(graphql);
  const query = { arguments: root.args || {}, selection: selection(root.selection) };
  if (RAW.has(root.name)) return { action: root.name, query };
  for (const action of ACTIONS) {
    if (!root.name.startsWith(action)) continue;
    let model = root.name.slice(action.length);
    let orThrow = '';
    if (!models.has(model) && model.endsWith('OrThrow') && models.has(model.slice(0, -'OrThrow'.length))) {
      model = model.slice(0, -'OrThrow'.length);
      orThrow = 'OrThrow';
    }
    if (!models.has(model)) break;
    query.arguments = tagJson(query.arguments, model, models);
    return { modelName: model, action: action + orThrow, query };
  }
  throw new Error(`stand-in: no action and model in ${root.name}`);
}

// The JSON protocol tags DateTime, Json, BigInt, Decimal and Bytes results; the GraphQL protocol
// returns their plain values (Json as its text, which prisma-client-py's models parse).
export function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 2 && typeof value.$type === 'string' && 'value' in value) {
      return value.value;
    }
    const out = {};
    for (const key of keys) out[key] = untag(value[key]);
    return out;
  }
  return value;
}

function graphqlResult(text) {
  const body = JSON.parse(text);
  if (body.errors) return body;
  const data = body.data || {};
  const keys = Object.keys(data);
  return { data: { result: untag(keys.length === 1 ? data[keys[0]] : data) } };
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------
const READ_AS = { 18: 25, 19: 25, 1003: 1009, 26: 20 }; // char, name -> text; name[] -> text[]; oid -> int8

function patchColumnTypes() {
  // name[] values are parsed like text[] (pg has no parser for them and would hand over '{a,b}')
  pg.types.setTypeParser(1003, pg.types.getTypeParser(1009));
  const fix = (res) => {
    for (const field of (res && res.fields) || []) {
      if (READ_AS[field.dataTypeID]) field.dataTypeID = READ_AS[field.dataTypeID];
    }
    return res;
  };
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function patchedQuery(config, values, callback) {
    if (typeof values === 'function') return query.call(this, config, (err, res) => values(err, res && fix(res)));
    if (typeof callback === 'function') return query.call(this, config, values, (err, res) => callback(err, res && fix(res)));
    const result = query.call(this, config, values);
    return result && typeof result.then === 'function' ? result.then(fix) : result;
  };
}

function databaseUrl() {
  if (process.env.OVERWRITE_DATASOURCES) {
    const sources = JSON.parse(process.env.OVERWRITE_DATASOURCES);
    if (sources.length && sources[0].url) return sources[0].url;
  }
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('stand-in: neither OVERWRITE_DATASOURCES nor DATABASE_URL names the database');
  return url;
}

function poolConfig(url) {
  const parsed = new URL(url);
  const limit = Number(parsed.searchParams.get('connection_limit')) || 10;
  // Prisma's own URL parameters mean nothing to node-postgres.
  for (const key of ['connection_limit', 'pool_timeout', 'pgbouncer', 'socket_timeout', 'schema',
    'statement_cache_size', 'connect_timeout', 'sslmode', 'sslaccept', 'max_connection_lifetime',
    'max_idle_connection_lifetime']) {
    parsed.searchParams.delete(key);
  }
  return { connectionString: parsed.toString(), max: limit };
}

async function loadEngine() {
  const dir = path.join(modules, '@prisma', 'query-engine-wasm', 'postgresql');
  const bindings = await import(path.join(dir, 'query_engine_bg.js'));
  const bytes = fs.readFileSync(path.join(dir, 'query_engine_bg.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, { './query_engine_bg.js': bindings });
  bindings.__wbg_set_wasm(instance.exports);
  return bindings;
}

async function main() {
  const port = Number(argValue('--port') || argValue('-p'));
  if (!port) throw new Error('stand-in: --port is required');
  const datamodel = fs.readFileSync(process.env.PRISMA_DML_PATH, 'utf8');
  const models = readModels(datamodel);
  patchColumnTypes();
  const pool = new pg.Pool(poolConfig(databaseUrl()));
  const bindings = await loadEngine();
  const log = (line) => {
    try {
      const event = JSON.parse(line);
      if (event.level === 'ERROR' || event.level === 'WARN') process.stderr.write(`stand-in engine: ${line}\n`);
    } catch { /* not JSON */ }
  };
  const engine = new bindings.QueryEngine({ datamodel, logLevel: 'warn', logQueries: false }, log,
    bindAdapter(new PrismaPg(pool)));
  await engine.connect('{}');

  const reply = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  const engineError = (error) => ({ errors: [{ error: String(error && error.message || error),
    user_facing_error: { is_panic: false, message: String(error && error.message || error) } }] });

  // LLMOPS_PRISMA_STANDIN_LOG: a file that receives every query, its translation and the answer.
  const trace = process.env.LLMOPS_PRISMA_STANDIN_LOG
    ? (entry) => fs.appendFileSync(process.env.LLMOPS_PRISMA_STANDIN_LOG, `${JSON.stringify(entry)}\n`)
    : () => {};

  async function runOne(item, txId) {
    const json = translate(item.query, models);
    const answer = await engine.query(JSON.stringify(json), '{}', txId);
    trace({ graphql: item.query, json, answer: answer.slice(0, 2000) });
    return graphqlResult(answer);
  }

  async function handle(req, body) {
    const url = new URL(req.url, 'http://localhost');
    const txId = req.headers['x-transaction-id'] || undefined;
    if (req.method === 'GET' && url.pathname === '/status') return [200, { status: 'ok' }];
    if (req.method === 'GET' && url.pathname === '/metrics') {
      return url.searchParams.get('format') === 'prometheus' ? [200, ''] : [200, { counters: [], gauges: [], histograms: [] }];
    }
    if (req.method === 'POST' && url.pathname === '/') {
      const request = JSON.parse(body);
      if (!request.batch) return [200, await runOne(request, txId)];
      if (request.transaction) {
        // The GraphQL batch with transaction: true runs all or nothing: one interactive transaction.
        const started = JSON.parse(await engine.startTransaction(JSON.stringify({ max_wait: 2000, timeout: 60000 }), '{}'));
        if (!started.id) return [500, started];
        const results = [];
        for (const item of request.batch) {
          const result = await runOne(item, started.id);
          if (result.errors) {
            await engine.rollbackTransaction(started.id, '{}');
            return [200, result];
          }
          results.push(result);
        }
        await engine.commitTransaction(started.id, '{}');
        return [200, { batchResult: results }];
      }
      const results = [];
      for (const item of request.batch) results.push(await runOne(item, txId));
      return [200, { batchResult: results }];
    }
    const tx = url.pathname.match(/^\/transaction\/(start|([^/]+)\/(commit|rollback))$/);
    if (req.method === 'POST' && tx) {
      let text;
      if (tx[1] === 'start') text = await engine.startTransaction(body || '{}', '{}');
      else if (tx[3] === 'commit') text = await engine.commitTransaction(tx[2], '{}');
      else text = await engine.rollbackTransaction(tx[2], '{}');
      const parsed = JSON.parse(text || '{}');
      return [parsed.error_code || parsed.errors ? 400 : 200, parsed];
    }
    return [404, { error: `stand-in: no route ${req.method} ${url.pathname}` }];
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      handle(req, Buffer.concat(chunks).toString('utf8'))
        .then(([status, body]) => reply(res, status, body))
        .catch((error) => reply(res, 200, engineError(error)));
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, '127.0.0.1');
  const stop = async () => {
    server.close();
    try { await engine.disconnect('{}'); } catch { /* already gone */ }
    await pool.end().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(1);
  });
}
