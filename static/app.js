// The counter page at /space/<id>: one Replicache per space, pokes over Server-Sent Events.
import { Replicache, dropDatabase } from "replicache";
import { mutators } from "./mutators.js";

const DEFAULT_PULL_INTERVAL_MS = 60_000;

// The server only serves this page for /space/<id> with a valid, existing id.
const spaceID = decodeURIComponent(location.pathname.split("/")[2] ?? "");
const api = "/api/replicache";
const $ = (id) => document.getElementById(id);
const query = `spaceID=${encodeURIComponent(spaceID)}`;

/**
 * ?pullInterval=off turns periodic pulls off (pokes alone keep the page current;
 * the browser test uses it); ?pullInterval=<ms> sets another period.
 */
function pullInterval(params) {
  const raw = params.get("pullInterval");
  if (raw === null) return DEFAULT_PULL_INTERVAL_MS;
  if (raw === "off") return null;
  const ms = Number(raw);
  return Number.isInteger(ms) && ms >= 1000 ? ms : DEFAULT_PULL_INTERVAL_MS;
}

// Tokens, when the server wants them. <meta name="replicache-auth"> holds the first one,
// <meta name="replicache-auth-url"> where to get the next (a JSON {"auth": token}, fetched
// with this page's cookies). This server writes both with --public-demo; an app that
// serves this page after its own sign-in writes its own. See README "Auth".
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
let auth = meta("replicache-auth");
const authURL = meta("replicache-auth-url");
// Counters the browser test reads: tokens fetched, poke streams opened.
const stats = { tokens: 0, streams: 0 };
globalThis.counterStats = stats;

/** A fresh token, or null when there is none to be had (the page then says so). */
async function freshAuth() {
  if (!authURL) {
    $("auth-needed").hidden = false;
    return null;
  }
  try {
    const response = await fetch(authURL, { cache: "no-store" });
    if (!response.ok) return null;
    auth = (await response.json()).auth || "";
  } catch {
    return null; // offline: Replicache and the poke stream try again later
  }
  stats.tokens += 1;
  return auth || null;
}

const rep = new Replicache({
  // The space is part of the name: each space gets its own local store and cookie.
  name: `counter-${spaceID}`,
  pushURL: `${api}/push?${query}`,
  pullURL: `${api}/pull?${query}`,
  pullInterval: pullInterval(new URLSearchParams(location.search)),
  mutators,
  auth,
});
// On a 401 (no token yet, or an expired one) Replicache asks for a new one and retries.
rep.getAuth = freshAuth;
globalThis.rep = rep; // for the browser console and the browser test

// The server ended this client group (its state was lost or restored from a backup, or
// the group sat idle past the server's CLIENT_TTL_DAYS): start over from the server's
// state. The local store goes first: Replicache forks the next group from an ended one's
// snapshot and cookie, which the server would end again.
rep.onClientStateNotFound = async () => {
  events?.close();
  await rep.close();
  // Another tab of this space may hold the store open a while: do not wait for it forever.
  const dropped = dropDatabase(rep.idbName).catch(() => {});
  await Promise.race([dropped, new Promise((resolve) => setTimeout(resolve, 2000))]);
  location.reload();
};

const countEl = $("count");
const button = $("increment");
const pendingEl = $("pending");

async function showPending() {
  const pending = await rep.experimentalPendingMutations();
  pendingEl.textContent = String(pending.length);
}

rep.subscribe(async (tx) => (await tx.get("count")) ?? 0, {
  onData(count) {
    countEl.textContent = String(count);
    countEl.removeAttribute("aria-busy");
    showPending();
  },
});

// Pending changes drop when a pull confirms them, which need not change the count. A
// long offline queue is applied a part at a time (the server's early exit), and Replicache
// pushes again only for a new mutation: so push while some stay pending after a sync.
rep.onSync = async (syncing) => {
  if (syncing || rep.closed) return;
  await showPending();
  if ((await rep.experimentalPendingMutations()).length) rep.push();
};

function showOnline(online) {
  $("online").dataset.online = online ? "yes" : "no";
  $("online-text").textContent = online ? "Online" : "Offline";
}
rep.onOnlineChange = showOnline;
showOnline(rep.online);

button.addEventListener("click", () => {
  rep.mutate.increment(1);
});
button.disabled = false;

// Pokes: the server says "pull soon" after every commit to this space.
// EventSource cannot send headers: the token goes in the query, on this stream only.
// The browser reconnects a dropped stream by itself, but gives up for good on an HTTP
// error, such as the 401 for a token that expired since the stream opened: then get a
// fresh token and open a new stream, backing off while that keeps failing.
const STREAM_RETRY_MS = [1000, 2000, 5000, 10_000, 30_000];
let failures = 0;
let connectedBefore = false;
let events = null;

function openPokes() {
  if (rep.closed) return; // starting over (onClientStateNotFound)
  const authQuery = auth ? `&auth=${encodeURIComponent(auth)}` : "";
  const stream = new EventSource(`${api}/poke?${query}${authQuery}`);
  events = stream;
  stream.addEventListener("message", (event) => {
    // A pull still running when the page starts over (onClientStateNotFound) ends in "Closed".
    if (event.data === "poke") rep.pull().catch((error) => rep.closed || Promise.reject(error));
  });
  stream.addEventListener("open", () => {
    // A reconnect may have missed pokes; the first connection follows the start-up pull.
    if (connectedBefore) rep.pull();
    connectedBefore = true;
    failures = 0;
    stats.streams += 1;
  });
  stream.addEventListener("error", () => {
    if (stream.readyState !== EventSource.CLOSED) return; // the browser retries this one
    const delay = STREAM_RETRY_MS[Math.min(failures, STREAM_RETRY_MS.length - 1)];
    failures += 1;
    setTimeout(async () => {
      if (auth || authURL) {
        const fresh = await freshAuth();
        if (fresh) rep.auth = fresh; // pushes and pulls use it too, without a 401 first
      }
      openPokes();
    }, delay);
  });
}
openPokes();

// Sharing.
$("space-id").textContent = spaceID;
const shareLink = $("share-link");
shareLink.value = `${location.origin}/space/${encodeURIComponent(spaceID)}`;
$("share").addEventListener("submit", async (event) => {
  event.preventDefault();
  let copied = false;
  try {
    await navigator.clipboard.writeText(shareLink.value);
    copied = true;
  } catch {
    shareLink.select(); // no clipboard access: leave it selected for Ctrl+C
  }
  $("copied").textContent = copied ? "Link copied." : "Press Ctrl+C (⌘C) to copy.";
});
