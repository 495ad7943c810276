// The real replicache@15.3.0 client (kvStore 'mem') with standard JWTs, the way an app
// embeds it: `auth` is a token from the app's backend, `getAuth` fetches a fresh one.
//
//   node tests/client/jwt_auth.mjs SERVER_URL TOKEN_URL
//
// TOKEN_URL?space=&user=&ttl= answers {"auth": <JWT>} (tests/jwtkit.py KeyServer plays the
// app's backend). Two users in one space converge; their tokens expire; the next pushes
// get 401, Replicache calls getAuth, and they converge again. One JSON report on stdout.
import http from "node:http";
import { Replicache } from "replicache";
import { increment } from "../../static/mutators.js";

const [base, tokenURL] = process.argv.slice(2);
if (!base || !tokenURL) {
  process.stderr.write("usage: node tests/client/jwt_auth.mjs <server URL> <token URL>\n");
  process.exit(2);
}
const TTL_SECONDS = 8; // room to converge before expiry on a slow machine
const DEADLINE_MS = 20_000;
const lines = [];
const events = [];
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...args) => lines.push({ who: "console", level, text: args.map(String).join(" ") });
}
process.on("unhandledRejection", (reason) => events.push({ event: "unhandledRejection", detail: String(reason) }));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function waitFor(what, predicate) {
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end) {
    if (await predicate()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function token(space, user) {
  const response = await fetch(`${tokenURL}?space=${space}&user=${user}&ttl=${TTL_SECONDS}`);
  return (await response.json()).auth;
}
const expiry = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString()).exp;

async function post(path, body, auth) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${auth}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function serverCount(space) {
  const body = { profileID: "jwt", clientGroupID: `viewer-${Date.now()}`, cookie: null, pullVersion: 1, schemaVersion: "" };
  const reply = await post(`/api/replicache/pull?spaceID=${space}`, body, await token(space, "viewer"));
  const put = reply.body.patch.find((op) => op.op === "put" && op.key === "count");
  return put ? put.value : 0;
}

/** The poke stream, with its token in the query as a browser's EventSource sends it. */
function listenPokes(space, auth, onPoke) {
  let ready, fail;
  const opened = new Promise((resolve, reject) => ([ready, fail] = [resolve, reject]));
  const url = `${base}/api/replicache/poke?spaceID=${space}&auth=${encodeURIComponent(auth)}`;
  const request = http.get(url, (response) => {
    if (response.statusCode === 200) ready();
    else fail(new Error(`poke stream: HTTP ${response.statusCode}`));
    response.setEncoding("utf8");
    response.on("data", (chunk) => chunk.includes("data: poke") && onPoke());
  });
  request.on("error", (error) => fail(error));
  return { opened, close: () => request.destroy() };
}

async function client(space, user) {
  const first = await token(space, user);
  const rep = new Replicache({
    name: `${user}-${space}`,
    kvStore: "mem",
    pushURL: `${base}/api/replicache/push?spaceID=${space}`,
    pullURL: `${base}/api/replicache/pull?spaceID=${space}`,
    pullInterval: null,
    requestOptions: { maxDelayMs: 500 },
    mutators: { increment },
    auth: `Bearer ${first}`,
    logSinks: [{ log: (level, context, ...args) => lines.push({ who: user, level, text: args.map(String).join(" ") }) }],
  });
  const c = { user, rep, values: [], getAuthCalls: 0, firstToken: first };
  rep.getAuth = async () => {
    c.getAuthCalls += 1;
    return `Bearer ${await token(space, user)}`;
  };
  rep.onClientStateNotFound = () => events.push({ who: user, event: "onClientStateNotFound" });
  rep.subscribe(async (tx) => (await tx.get("count")) ?? 0, { onData: (v) => c.values.push(v) });
  c.pokes = listenPokes(space, first, () => rep.pull());
  await c.pokes.opened;
  return c;
}

async function converge(space, group, expected) {
  await waitFor(`count ${expected}`, async () => {
    for (const c of group) {
      if (c.values.at(-1) !== expected) return false;
      if ((await c.rep.experimentalPendingMutations()).length) return false;
    }
    return true;
  });
  return { server: await serverCount(space), counts: group.map((c) => c.values.at(-1)) };
}

const report = {};
let group = [];
try {
  const space = `jwt-${Date.now().toString(36)}`;
  const created = await post("/api/replicache/createSpace", { spaceID: space }, await token(space, "ann"));
  report.created = created.status;
  group = [await client(space, "ann"), await client(space, "bob")];
  const [a, b] = group;
  a.rep.mutate.increment(1);
  b.rep.mutate.increment(10);
  report.before = await converge(space, group, 11);
  report.getAuthBefore = group.map((c) => c.getAuthCalls);

  // Past the tokens' expiry (the server allows no leeway in this test).
  const expires = Math.max(...group.map((c) => expiry(c.firstToken)));
  await sleep(Math.max(0, expires * 1000 - Date.now() + 300));
  report.expiredStatus = (await post(`/api/replicache/pull?spaceID=${space}`, { profileID: "x", clientGroupID: "x", cookie: null, pullVersion: 1 }, a.firstToken)).status;
  a.rep.mutate.increment(100);
  b.rep.mutate.increment(1000);
  report.after = await converge(space, group, 1111);
  report.getAuthAfter = group.map((c) => c.getAuthCalls);
  report.ok = true;
} catch (error) {
  report.ok = false;
  report.error = String(error?.stack ?? error);
}
for (const c of group) {
  c.pokes.close();
  await c.rep.close();
}
report.events = events;
report.errorLines = lines.filter((l) => l.level === "error" && !/401/.test(l.text)).slice(0, 20);
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(0);
