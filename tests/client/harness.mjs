// What the Node scenario scripts share: the server URL (argv[2]), every client log line
// captured by client label, pokes read like an EventSource would, waits with a deadline,
// and the run that prints one JSON report on stdout (pytest asserts on it).
import http from "node:http";

export const base = process.argv[2];
if (!base) {
  process.stderr.write(`usage: node ${process.argv[1]} <server URL>\n`);
  process.exit(2);
}
export const DEADLINE_MS = 20_000;
export const BAD_LINES = [/is < than last snapshot/, /did not change, but/];

// ---- log capture: every client line, by client label

export const lines = []; // {who, level, text}
export function record(who, level, args) {
  const text = args
    .map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : typeof a === "string" ? a : safeJSON(a)))
    .join(" ");
  lines.push({ who, level, text });
}
export function safeJSON(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
// Replicache also writes some lines straight to the console.
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...args) => record("console", level, args);
}
export const events = []; // onClientStateNotFound, onUpdateNeeded, unhandled rejections
process.on("unhandledRejection", (reason) => events.push({ who: "process", event: "unhandledRejection", detail: String(reason) }));

// ---- the server

export async function post(path, body) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${safeJSON(json)}`);
  return json;
}

export async function createSpace() {
  return (await post("/api/replicache/createSpace", {})).spaceID;
}

/** Pokes as a browser's EventSource would get them; Node 20 has none, so read the stream. */
export function listenPokes(space, onPoke) {
  let buffer = "";
  let ready, fail;
  const opened = new Promise((resolve, reject) => ([ready, fail] = [resolve, reject]));
  const request = http.get(`${base}/api/replicache/poke?spaceID=${space}`, (response) => {
    // The server sends its headers once the listener is registered.
    if (response.statusCode === 200) ready();
    else fail(new Error(`poke stream: HTTP ${response.statusCode}`));
    response.setEncoding("utf8");
    response.on("data", (chunk) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trim())
          .join("\n");
        if (data === "poke") onPoke();
      }
    });
  });
  request.on("error", (error) => fail(error)); // after close: a no-op
  return { opened, close: () => request.destroy() };
}

// ---- waiting

export const pending = async (client) => (await client.rep.experimentalPendingMutations()).length;

/** Poll with a deadline: pending mutations have no change event. */
export async function waitFor(what, predicate) {
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end) {
    if (await predicate()) return;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the run

/**
 * Runs each scenario in turn (a failure is reported, the rest still run), closes every
 * client in `clients` ({pokes, rep}), prints the report (with `extra` in it) and exits.
 */
export async function run(scenarios, clients, extra = {}) {
  const report = { ...extra, scenarios: {} };
  for (const [name, scenario] of Object.entries(scenarios)) {
    const started = Date.now();
    try {
      report.scenarios[name] = { ok: true, ...(await scenario()) };
    } catch (error) {
      report.scenarios[name] = { ok: false, error: String(error?.stack ?? error) };
    }
    report.scenarios[name].ms = Date.now() - started;
  }
  for (const c of clients) {
    c.pokes.close();
    await c.rep.close();
  }
  report.events = events;
  report.badLines = lines.filter((l) => BAD_LINES.some((re) => re.test(l.text)));
  report.linesByClient = {};
  for (const l of lines) report.linesByClient[l.who] = (report.linesByClient[l.who] ?? 0) + 1;
  report.sampleLines = lines.slice(0, 50);
  report.errorLines = lines.filter((l) => l.level === "error");
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(0);
}
