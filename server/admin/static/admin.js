// The admin inspector's few interactions: create, delete, live updates. No framework.
"use strict";

const WRITE = { "X-Admin-Request": "1" };

function showMessage(text) {
  const box = document.getElementById("message");
  if (box) {
    box.textContent = text;
    box.hidden = !text;
  }
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.message || body.error || response.statusText;
  } catch {
    return response.statusText;
  }
}

function setupCreate() {
  const form = document.getElementById("create-space");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const wanted = form.elements.spaceID.value.trim();
    const response = await fetch("/admin/api/spaces", {
      method: "POST",
      headers: { ...WRITE, "Content-Type": "application/json" },
      body: JSON.stringify(wanted ? { spaceID: wanted } : {}),
    });
    if (!response.ok) {
      showMessage(await apiError(response));
      return;
    }
    const { spaceID } = await response.json();
    location.href = "/admin/space/" + encodeURIComponent(spaceID);
  });
}

function setupSpace() {
  const root = document.getElementById("space");
  if (!root) return;
  const spaceID = root.dataset.space;
  const live = document.getElementById("live");
  let refreshing = null;
  let again = false;
  let deleting = false;

  async function refresh() {
    // Re-render through the server's own template: fetch this page, swap the live part.
    const response = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (response.status === 404) {
      showMessage("This space was deleted.");
      live.textContent = "deleted";
      live.className = "live off";
      events.close();
      return;
    }
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("live-part");
    if (fresh) document.getElementById("live-part").replaceWith(fresh);
  }

  function schedule() {
    // One refresh at a time; pokes landing meanwhile cause one more.
    if (deleting) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = refresh().finally(() => {
      refreshing = null;
      if (again) {
        again = false;
        schedule();
      }
    });
  }

  // The admin's own poke stream (the login cookie, not an app token): works with auth on.
  const events = new EventSource("/admin/api/pokes?spaceID=" + encodeURIComponent(spaceID));
  events.onmessage = (event) => {
    if (event.data === "hello") {
      live.textContent = "live";
      live.className = "live on";
    } else if (event.data === "poke") {
      schedule();
    }
  };
  events.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };

  document.getElementById("delete-space").addEventListener("click", async () => {
    const sure = confirm(`Delete space "${spaceID}" with all its entries and clients? This cannot be undone.`);
    if (!sure) return;
    // The delete pokes this page: no refresh may run into the 404 it causes.
    deleting = true;
    await refreshing?.catch(() => {});
    const response = await fetch("/admin/api/spaces/" + encodeURIComponent(spaceID), {
      method: "DELETE",
      headers: WRITE,
    });
    if (!response.ok) {
      deleting = false;
      showMessage(await apiError(response));
      return;
    }
    events.close();
    location.href = "/admin";
  });
}

setupCreate();
setupSpace();
