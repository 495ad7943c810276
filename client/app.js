// The counter page at /space/<id>: one Replicache per space, pokes over Server-Sent Events.
import { Replicache, dropDatabase } from "replicache";
import { mutators } from "./mutators.js";

const DEFAULT_PULL_INTERVAL_MS = 60_000;

// The server only serves this page for /space/<id> with a valid, existing id.
const spaceID = decodeURIComponent(location.pathname.split("/")[2] ?? "");
const api = "/api/replicache";
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

// Set by the server when it requires tokens (--auth-secret); empty otherwise.
const auth = document.querySelector('meta[name="replicache-auth"]')?.content ?? "";

const rep = new Replicache({
  // The space is part of the name: each space gets its own local store and cookie.
  name: `counter-${spaceID}`,
  pushURL: `${api}/push?${query}`,
  pullURL: `${api}/pull?${query}`,
  pullInterval: pullInterval(new URLSearchParams(location.search)),
  mutators,
  auth,
});
if (auth) {
  // On a 401 (say, an expired token) Replicache asks for a new one and retries.
  rep.getAuth = async () => {
    const response = await fetch(`/space/${encodeURIComponent(spaceID)}/auth`);
    return response.ok ? (await response.json()).auth : null;
  };
}
globalThis.rep = rep; // for the browser console and the browser test

// The server ended this client group (the space was restored from a backup, or the group
// sat idle past the server's CLIENT_TTL_DAYS): start over from the server's state. The
// local store goes first: a reload would fork the next group from the ended one.
rep.onClientStateNotFound = async () => {
  events.close();
  await rep.close();
  // Another tab of this space may hold the store open a while: do not wait for it forever.
  const dropped = dropDatabase(rep.idbName).catch(() => {});
  await Promise.race([dropped, new Promise((resolve) => setTimeout(resolve, 2000))]);
  location.reload();
};

const $ = (id) => document.getElementById(id);
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

// Pending changes drop when a pull confirms them, which need not change the count.
rep.onSync = (syncing) => {
  if (!syncing) showPending();
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
const authQuery = auth ? `&auth=${encodeURIComponent(auth)}` : "";
const events = new EventSource(`${api}/poke?${query}${authQuery}`);
events.addEventListener("message", (event) => {
  // A pull still running when the page starts over (onClientStateNotFound) ends in "Closed".
  if (event.data === "poke") rep.pull().catch((error) => rep.closed || Promise.reject(error));
});
let connectedBefore = false;
events.addEventListener("open", () => {
  // A reconnect may have missed pokes; the first connection follows the start-up pull.
  if (connectedBefore) rep.pull();
  connectedBefore = true;
});

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
