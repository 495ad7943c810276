// The real replicache client (15.3.0, or 14.2.2 as the npm alias replicache-14), in memory,
// against a running server.
//
//   node tests/client/scenarios.mjs http://127.0.0.1:PORT [replicache | replicache-14]
//
// Runs each scenario in a fresh space and prints one JSON report on stdout (pytest,
// tests/client/test_node_client.py, asserts on it). Everything the client logs is
// captured (harness.mjs), none of it goes to stdout.
import { increment } from "../../static/mutators.js";
import {
  BAD_LINES,
  base,
  createSpace,
  events,
  lines,
  listenPokes,
  pending,
  post,
  record,
  run,
  safeJSON,
  sleep,
  waitFor,
} from "./harness.mjs";

const replicache = await import(process.argv[3] ?? "replicache");
const { Replicache } = replicache;
// 14.x has no kvStore option and wants a license key: its test key skips the license check
// (no network) and closes the client after 5 minutes, longer than these scenarios take.
const memoryStore = replicache.version.startsWith("14.")
  ? {
      experimentalCreateKVStore: (name) => new replicache.ExperimentalMemKVStore(name),
      licenseKey: replicache.TEST_LICENSE_KEY,
    }
  : { kvStore: "mem" };

/** The count as the server has it: a full pull by a brand-new client group. */
async function serverCount(space) {
  const body = {
    profileID: "scenarios",
    clientGroupID: `viewer-${Math.random().toString(36).slice(2)}`,
    cookie: null,
    pullVersion: 1,
    schemaVersion: "",
  };
  const reply = await post(`/api/replicache/pull?spaceID=${space}`, body);
  const put = reply.patch.find((op) => op.op === "put" && op.key === "count");
  return put ? put.value : 0;
}

// ---- clients

const clients = [];

/** A Replicache like one browser tab: pulls on pokes, no interval pulls. */
async function tab(space, who, { name, mutators = { increment }, pusher, puller, pullOnPoke = () => true } = {}) {
  const rep = new Replicache({
    name: name ?? `${who}-${space}`,
    ...memoryStore,
    pushURL: `${base}/api/replicache/push?spaceID=${space}`,
    pullURL: `${base}/api/replicache/pull?spaceID=${space}`,
    pullInterval: null,
    requestOptions: { maxDelayMs: 500 },
    mutators,
    pusher,
    puller,
    logLevel: "info",
    logSinks: [{ log: (level, context, ...args) => record(who, level, args) }],
  });
  const client = { who, rep, values: [], online: [] };
  rep.onClientStateNotFound = () => events.push({ who, event: "onClientStateNotFound" });
  rep.onUpdateNeeded = (reason) => events.push({ who, event: "onUpdateNeeded", detail: safeJSON(reason) });
  rep.onOnlineChange = (online) => client.online.push(online);
  rep.subscribe(async (tx) => (await tx.get("count")) ?? 0, { onData: (v) => client.values.push(v) });
  client.pokes = listenPokes(space, () => pullOnPoke() && rep.pull());
  await client.pokes.opened;
  clients.push(client);
  return client;
}

const last = (client) => client.values.at(-1);

async function converge(space, group, expected) {
  await waitFor(`count ${expected} and nothing pending`, async () => {
    for (const c of group) if (last(c) !== expected || (await pending(c)) !== 0) return false;
    return true;
  });
  return state(space, group);
}

async function state(space, group) {
  return {
    server: await serverCount(space),
    counts: group.map(last),
    pending: await Promise.all(group.map(pending)),
    clientIDs: group.map((c) => c.rep.clientID),
    clientGroupIDs: await Promise.all(group.map((c) => c.rep.clientGroupID)),
  };
}

// ---- scenarios

async function twoClients() {
  const space = await createSpace();
  const a = await tab(space, "two-a");
  const b = await tab(space, "two-b");
  for (let i = 0; i < 10; i++) {
    a.rep.mutate.increment(1);
    await sleep(i % 3 === 0 ? 0 : 15);
    b.rep.mutate.increment(100);
  }
  return { expected: 1010, ...(await converge(space, [a, b], 1010)) };
}

async function sameName() {
  const space = await createSpace();
  const name = `shared-${space}`;
  const a = await tab(space, "same-a", { name });
  const b = await tab(space, "same-b", { name });
  for (let i = 0; i < 8; i++) {
    a.rep.mutate.increment(1);
    b.rep.mutate.increment(10);
    await sleep(10);
  }
  return { expected: 88, ...(await converge(space, [a, b], 88)) };
}

async function offline() {
  const space = await createSpace();
  let mode = "online"; // "offline": fail before sending; "lost": send, then lose the answer
  const attempts = { online: 0, offline: 0, lost: 0 };
  const pushURL = `${base}/api/replicache/push?spaceID=${space}`;
  const pusher = async (body, requestID) => {
    const now = mode;
    attempts[now] += 1;
    if (now === "offline") throw new Error("offline (test)");
    const response = await fetch(pushURL, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Replicache-RequestID": requestID },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (now === "lost") throw new Error("connection lost after sending (test)");
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      httpRequestInfo: { httpStatusCode: response.status, errorMessage: response.ok ? "" : text },
      response: json && json.error ? json : undefined,
    };
  };
  // While not online it also ignores pokes, so nothing but a retry can confirm its pushes.
  const c = await tab(space, "offline-c", { pusher, pullOnPoke: () => mode === "online" });
  const d = await tab(space, "offline-d");

  c.rep.mutate.increment(1);
  c.rep.mutate.increment(1);
  await converge(space, [c, d], 2);

  mode = "offline";
  for (let i = 0; i < 5; i++) c.rep.mutate.increment(1);
  d.rep.mutate.increment(100);
  d.rep.mutate.increment(100);
  await waitFor("the offline client to notice", () => c.online.includes(false) && attempts.offline >= 2);
  await waitFor("the other client's pushes", async () => (await serverCount(space)) === 202);
  const whileOffline = { count: last(c), pending: await pending(c), server: await serverCount(space) };

  mode = "lost"; // the server applies these pushes; the client never hears so and retries
  await waitFor("two lost pushes", () => attempts.lost >= 2);
  const whileLost = { pending: await pending(c), server: await serverCount(space) };

  mode = "online";
  c.rep.pull();
  const final = await converge(space, [c, d], 207);
  return { expected: 207, attempts, onlineChanges: c.online, whileOffline, whileLost, ...final };
}

async function lyingMutator() {
  const space = await createSpace();
  const liar = async (tx, delta) => {
    const prev = (await tx.get("count")) ?? 0;
    await tx.put("count", prev + delta + 1000);
  };
  const l = await tab(space, "liar", { mutators: { increment: liar } });
  const h = await tab(space, "honest");
  await l.rep.mutate.increment(1);
  const shownAfterLie = last(l);
  h.rep.mutate.increment(2);
  const final = await converge(space, [l, h], 3);
  return { expected: 3, shownAfterLie, liarValues: l.values, ...final };
}

/**
 * Proves the log check can fail: a puller that breaks the cookie rules (an unchanged
 * cookie with a patch, then a cookie that goes back) must produce both bad lines.
 */
async function canary() {
  const space = await createSpace();
  const pullURL = `${base}/api/replicache/pull?spaceID=${space}`;
  let pulls = 0;
  const puller = async (body) => {
    pulls += 1;
    const response = await fetch(pullURL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const reply = await response.json();
    if (pulls === 2) Object.assign(reply, { cookie: body.cookie, patch: [{ op: "put", key: "x", value: 1 }] });
    if (pulls === 3) reply.cookie = body.cookie - 1;
    return { response: reply, httpRequestInfo: { httpStatusCode: response.status, errorMessage: "" } };
  };
  const c = await tab(space, "canary", { puller, pullOnPoke: () => false });
  await c.rep.mutate.increment(1);
  await waitFor("the first pull", () => pulls >= 1);
  await waitFor("the push", async () => (await serverCount(space)) === 1);
  await c.rep.pull();
  await waitFor("pull 2", () => pulls >= 2);
  await c.rep.pull();
  // 14.x has no "did not change, but" check: only the cookie that went back is caught there.
  const expected = replicache.version.startsWith("14.") ? BAD_LINES.slice(0, 1) : BAD_LINES;
  await waitFor("the canary lines", () =>
    expected.every((re) => lines.some((l) => l.who === "canary" && re.test(l.text))),
  );
  return { pulls };
}

// ---- run

await run({ twoClients, sameName, offline, lyingMutator, canary }, clients, { version: replicache.version });
