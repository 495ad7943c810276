// The real replicache@15.3.0 client (kvStore 'mem') through the recovery paths (issue 11).
//
//   node tests/client/recovery.mjs http://127.0.0.1:PORT <scenario>
//
// longQueue: a client offline for 1,200 increments comes back (the server applies at most
//   1,000 new mutations a push) and converges with nothing pending.
// restore: driven by tests/client/test_recovery.py, which restarts the server between the
//   steps: it prints "step <name>" and waits for a line on stdin before going on. The data
//   dir is copied after the first sync and put back after the second; the clients must
//   converge to the restored state.
// Prints one JSON report on stdout.
import readline from "node:readline";
import { Replicache, dropDatabase } from "replicache";
import { increment } from "../../static/mutators.js";

const [base, which] = process.argv.slice(2);
const DEADLINE_MS = 60_000;
const BAD_LINES = [/is < than last snapshot/, /did not change, but/];
const lines = [];
const events = [];
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...args) => lines.push({ who: "console", level, text: args.map(String).join(" ") });
}

const input = readline.createInterface({ input: process.stdin });
const waiting = [];
input.on("line", () => waiting.shift()?.());
function step(name) {
  process.stdout.write(`step ${name}\n`);
  return new Promise((resolve) => waiting.push(resolve));
}

async function post(path, body) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function serverCount(space) {
  const body = { profileID: "p", clientGroupID: `viewer-${Math.random()}`, cookie: null, pullVersion: 1, schemaVersion: "" };
  for (;;) {
    try {
      const reply = await post(`/api/replicache/pull?spaceID=${space}`, body);
      return reply.body.patch.find((op) => op.key === "count")?.value ?? 0;
    } catch {
      await sleep(100); // the server is restarting
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A tab; when the server says its state is gone it does what a page should: close, drop
 * its local store (else Replicache forks a new group from the dropped one's snapshot and
 * cookie, and is dropped again), and start a new Replicache. */
function tab(space, who, { pusher } = {}) {
  const tabState = { who, starts: 0, rep: null };
  const start = () => {
    tabState.starts += 1;
    const rep = new Replicache({
      name: `${who}-${space}`,
      kvStore: "mem",
      pushURL: `${base}/api/replicache/push?spaceID=${space}`,
      pullURL: `${base}/api/replicache/pull?spaceID=${space}`,
      pullInterval: 200,
      requestOptions: { maxDelayMs: 300 },
      mutators: { increment },
      pusher,
      logLevel: "info",
      logSinks: [{ log: (level, context, ...args) => lines.push({ who, level, text: args.map(String).join(" ") }) }],
    });
    // As the counter page does: a push cut short by the server's early exit leaves
    // mutations pending, and Replicache pushes again only for a new mutation; so after a
    // sync that leaves some pending, ask for a push.
    rep.onSync = async (syncing) => {
      if (!syncing && !rep.closed && (await rep.experimentalPendingMutations()).length) rep.push();
    };
    rep.onClientStateNotFound = async () => {
      events.push({ who, event: "onClientStateNotFound" });
      await rep.close();
      await dropDatabase(rep.idbName, { kvStore: "mem" });
      start();
    };
    tabState.rep = rep;
  };
  start();
  return tabState;
}

async function count(t) {
  return t.rep.query(async (tx) => (await tx.get("count")) ?? 0);
}

async function converge(space, tabs, expected) {
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end) {
    const counts = await Promise.all(tabs.map((t) => count(t).catch(() => -1)));
    const pending = await Promise.all(tabs.map((t) => t.rep.experimentalPendingMutations().then((p) => p.length).catch(() => -1)));
    if (counts.every((c) => c === expected) && pending.every((p) => p === 0)) {
      return { counts, pending, server: await serverCount(space) };
    }
    await sleep(50);
  }
  const counts = await Promise.all(tabs.map((t) => count(t).catch(() => -1)));
  throw new Error(`timed out converging on ${expected}: ${JSON.stringify(counts)}`);
}

async function longQueue() {
  const space = (await post("/api/replicache/createSpace", {})).body.spaceID;
  let online = false;
  const pushURL = `${base}/api/replicache/push?spaceID=${space}`;
  const pushes = [];
  const pusher = async (body, requestID) => {
    if (!online) throw new Error("offline (test)");
    pushes.push(body.mutations.length);
    const response = await fetch(pushURL, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Replicache-RequestID": requestID },
      body: JSON.stringify(body),
    });
    return { httpRequestInfo: { httpStatusCode: response.status, errorMessage: "" }, response: undefined };
  };
  const a = tab(space, "queue", { pusher });
  for (let i = 0; i < 1200; i++) a.rep.mutate.increment(1);
  await sleep(300);
  const whileOffline = (await a.rep.experimentalPendingMutations()).length;
  online = true;
  const done = await converge(space, [a], 1200);
  return { whileOffline, pushes, ...done };
}

async function restore() {
  const space = (await post("/api/replicache/createSpace", {})).body.spaceID;
  const a = tab(space, "restore-a");
  const b = tab(space, "restore-b");
  for (let i = 0; i < 3; i++) a.rep.mutate.increment(1);
  const first = await converge(space, [a, b], 3);
  await step("copy"); // the server is stopped, its data dir copied, and started again
  for (let i = 0; i < 4; i++) b.rep.mutate.increment(10);
  const second = await converge(space, [a, b], 43);
  await step("restore"); // the server is stopped, the copy put back, and started again
  const restored = await converge(space, [a, b], 3);
  a.rep.mutate.increment(100); // and both sync on from there
  const after = await converge(space, [a, b], 103);
  return { first, second, restored, after, starts: [a.starts, b.starts] };
}

const report = { ok: true };
try {
  report.result = await { longQueue, restore }[which]();
} catch (error) {
  report.ok = false;
  report.error = String(error?.stack ?? error);
}
report.events = events;
report.badLines = lines.filter((l) => BAD_LINES.some((re) => re.test(l.text)));
report.errorLines = lines.filter((l) => l.level === "error").map((l) => l.text).slice(0, 20);
process.stdout.write(`report ${JSON.stringify(report)}\n`);
process.exit(0);
