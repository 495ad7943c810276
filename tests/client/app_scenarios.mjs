// The real replicache@15.3.0 client (kvStore 'mem') against a server built for an app of
// its own (issue 14): started with `--mutators <a module with setTitle>` and
// `--admin-token $ADMIN_TOKEN`.
//
//   ADMIN_TOKEN=... node tests/client/app_scenarios.mjs http://127.0.0.1:PORT
//
// Prints one JSON report on stdout; tests/client/test_node_app.py asserts on it.
import { Replicache, dropDatabase } from "replicache";
import { base, createSpace, events, listenPokes, pending, record, run, safeJSON, sleep, waitFor } from "./harness.mjs";

const TOKEN = process.env.ADMIN_TOKEN;

/** The client twin of the server's setTitle (the test's module). */
async function setTitle(tx, { title }) {
  await tx.set("title", title);
}
/** The built-in increment: this server's module does not have it. */
async function increment(tx, delta) {
  await tx.set("count", ((await tx.get("count")) ?? 0) + delta);
}
const mutators = { setTitle, increment };

async function admin(method, path, body) {
  const response = await fetch(`${base}/admin/api/spaces/${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${safeJSON(json)}`);
  return json;
}
const putEntry = (space, key, value) => admin("PUT", `${space}/entries/${encodeURIComponent(key)}`, value);
const deleteEntry = (space, key) => admin("DELETE", `${space}/entries/${encodeURIComponent(key)}`);

// ---- clients: like a browser tab, with the whole client view subscribed

const clients = [];

/**
 * A tab that pulls on pokes only. On ClientStateNotFound it does what a page should:
 * close, drop its local store (else a new Replicache of that name forks its next client
 * group from the ended one's snapshot and cookie), and start again with a new Replicache.
 */
async function tab(space, who) {
  const client = { who, space, views: [], starts: 0, csn: 0, pokes: null, rep: null, pulls: 0 };
  async function start() {
    client.starts += 1;
    const rep = new Replicache({
      name: `${who}-${space}`,
      kvStore: "mem",
      pushURL: `${base}/api/replicache/push?spaceID=${space}`,
      pullURL: `${base}/api/replicache/pull?spaceID=${space}`,
      pullInterval: null,
      requestOptions: { maxDelayMs: 500 },
      mutators,
      logLevel: "info",
      logSinks: [{ log: (level, context, ...args) => record(who, level, args) }],
    });
    rep.onClientStateNotFound = async () => {
      events.push({ who, event: "onClientStateNotFound" });
      client.csn += 1;
      client.pokes.close();
      await rep.close();
      await dropDatabase(rep.idbName, { kvStore: "mem" });
      await start();
    };
    rep.onUpdateNeeded = (reason) => events.push({ who, event: "onUpdateNeeded", detail: safeJSON(reason) });
    rep.subscribe(async (tx) => Object.fromEntries(await tx.scan().entries().toArray()), {
      onData: (view) => client.views.push(view),
    });
    client.rep = rep;
    client.pokes = listenPokes(space, () => {
      client.pulls += 1;
      rep.pull().catch((error) => {
        // The pull that found the group gone ends in "Closed": the tab closed on purpose.
        if (!rep.closed) events.push({ who, event: "pullFailed", detail: String(error) });
      });
    });
    await client.pokes.opened;
  }
  await start();
  clients.push(client);
  return client;
}

const view = (client) => client.views.at(-1) ?? {};
const same = (a, b) => safeJSON(sorted(a)) === safeJSON(sorted(b));
const sorted = (object) => Object.fromEntries(Object.entries(object).sort(([a], [b]) => (a < b ? -1 : 1)));

/** The client view as the server has it: a full pull by a brand-new client group. */
async function serverView(space) {
  const response = await fetch(`${base}/api/replicache/pull?spaceID=${space}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ profileID: "app", clientGroupID: `viewer-${Math.random()}`, cookie: null, pullVersion: 1, schemaVersion: "" }),
  });
  const reply = await response.json();
  return Object.fromEntries(reply.patch.filter((op) => op.op === "put").map((op) => [op.key, op.value]));
}

/** Every tab shows `expected` (the server's view when omitted) with nothing pending. */
async function converge(space, group, expected) {
  await waitFor(`the same view with nothing pending`, async () => {
    const want = expected ?? (await serverView(space));
    for (const c of group) if (!same(view(c), want) || (await pending(c)) !== 0) return false;
    return true;
  });
  return { server: await serverView(space), views: group.map(view), pending: await Promise.all(group.map(pending)) };
}

// ---- scenarios

/** Your own mutators: both tabs call setTitle; the server runs its Python twin. */
async function ownMutators() {
  const space = await createSpace();
  const a = await tab(space, "own-a");
  const b = await tab(space, "own-b");
  await a.rep.mutate.setTitle({ title: "from a" });
  const first = await converge(space, [a, b], { title: "from a" });
  for (let i = 0; i < 5; i++) {
    a.rep.mutate.setTitle({ title: `a${i}` });
    await sleep(i * 7);
    b.rep.mutate.setTitle({ title: `b${i}` });
  }
  const interleaved = await converge(space, [a, b]);
  // The server's module has no increment: the mutation fails there and the optimistic
  // count disappears from every tab.
  await b.rep.mutate.increment(5);
  const shownAfterIncrement = view(b).count;
  const final = await converge(space, [a, b], interleaved.server);
  return { first, interleaved, shownAfterIncrement, ...final };
}

/** A trusted backend writes as the server: the tab hears it through its poke and pull. */
async function serverWrite() {
  const space = await createSpace();
  const a = await tab(space, "write-a");
  const b = await tab(space, "write-b");
  const timings = {};
  let started = Date.now();
  const put = await putEntry(space, "todo/1", { text: "from the backend", done: false });
  await waitFor("the backend's put", async () => view(a)["todo/1"]?.text === "from the backend");
  timings.put = Date.now() - started;
  started = Date.now();
  const mutated = await admin("POST", `${space}/mutate`, { name: "setTitle", args: { title: "set by cron" } });
  await waitFor("the backend's mutation", async () => view(a).title === "set by cron");
  timings.mutate = Date.now() - started;
  started = Date.now();
  b.rep.mutate.setTitle({ title: "a client's push" }); // the bound both are held to
  await waitFor("another client's push", async () => view(a).title === "a client's push");
  timings.push = Date.now() - started;
  const deleted = await deleteEntry(space, "todo/1");
  const final = await converge(space, [a, b], { title: "a client's push" });
  return { versions: [put.version, mutated.version, deleted.version], timings, pullsOnPokes: a.pulls, ...final };
}

/** Export, more writes, import over the space: both tabs start over and show the backup. */
async function restore() {
  const space = await createSpace();
  const a = await tab(space, "restore-a");
  const b = await tab(space, "restore-b");
  await a.rep.mutate.setTitle({ title: "backed up" });
  for (let i = 1; i <= 3; i++) await putEntry(space, `todo/${i}`, { n: i, text: `todo ${i}` });
  await converge(space, [a, b]);
  const backup = await admin("GET", `${space}/export`);

  a.rep.mutate.setTitle({ title: "after the backup" });
  await putEntry(space, "todo/4", { n: 4 });
  await deleteEntry(space, "todo/1");
  const changed = await converge(space, [a, b]);

  const restored = await admin("POST", `${space}/import`, backup);
  const expected = Object.fromEntries(backup.entries.map((e) => [e.key, e.value]));
  await waitFor("both tabs to start over", () => a.csn >= 1 && b.csn >= 1);
  const final = await converge(space, [a, b], expected);
  await b.rep.mutate.setTitle({ title: "after the restore" }); // the new groups sync on
  const after = await converge(space, [a, b], { ...expected, title: "after the restore" });

  // Into a new id: a copy; the original and its tabs are untouched.
  const copyID = `copy-${space}`;
  const copied = await admin("POST", `${copyID}/import`, backup);
  const original = await serverView(space);
  return {
    expected,
    changed: changed.server,
    restored,
    csn: [a.csn, b.csn],
    starts: [a.starts, b.starts],
    copied,
    copy: await serverView(copyID),
    original,
    afterCopy: { csn: [a.csn, b.csn], views: [view(a), view(b)] },
    after: after.server,
    ...final,
  };
}

await run({ ownMutators, serverWrite, restore }, clients);
