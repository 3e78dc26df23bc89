// Shared by every page (an ES module, loaded by base.html and by each page's own module): the
// JSON API with the session cookie and CSRF header, and local clocks. Text goes through Django's
// JavaScript catalogue (gettext, ngettext, interpolate: /jsi18n/, loaded by base.html first), and
// dates and numbers through Intl in the page's language (<html lang>).

// The page's language ("en", "zh-hant"), for Intl: dates, times and numbers as its readers write them.
export const LANG = document.documentElement.lang || undefined;

// A number as the page's language writes it: 1,234 · 0.375.
export function formatNumber(value, options = {}) {
  return typeof value === "number" ? value.toLocaleString(LANG, options) : String(value);
}

export function cookie(name) {
  const prefix = `${name}=`;
  for (const part of document.cookie.split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
  }
  return "";
}

// Resolves to {ok, status, data}; never throws. Failed answers always carry data.detail,
// the message the page shows next to the form.
export async function api(method, url, body, { keepalive = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      keepalive,
    });
  } catch (error) {
    return { ok: false, status: 0, data: { detail: gettext("Could not reach the server. Check your connection and try again; nothing on this page is lost.") } };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
  }
  if (!response.ok) {
    data = data && typeof data === "object" ? data : {};
    if (!data.detail) {
      data.detail = interpolate(gettext("The server answered %(status)s %(text)s."), { status: response.status, text: response.statusText }, true);
    }
  }
  return { ok: response.ok, status: response.status, data };
}

export function clock(iso) {
  const moment = iso ? new Date(iso) : new Date();
  return moment.toLocaleTimeString(LANG, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(LANG, { dateStyle: "medium", timeStyle: "short", hour12: false });
}

// <time datetime="…" data-local> is rendered in UTC by the server; show the reader's own time.
export function localTimes(scope) {
  for (const node of scope.querySelectorAll("time[data-local]")) {
    const iso = node.getAttribute("datetime");
    if (!iso) continue;
    node.textContent = node.dataset.local === "clock" ? clock(iso).slice(0, 5) : dateTime(iso);
    node.title = new Date(iso).toLocaleString(LANG, { dateStyle: "full", timeStyle: "long" });
  }
}

export function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context (https or localhost); plain-http servers get this.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// A module runs once per page however many modules depend on it, so this runs once too.
localTimes(document);

// The Content-Security-Policy allows no style attributes: a template hands numbers to the CSS as
// data-vars='{"left": 12.5}', which become custom properties (--left) that the stylesheet uses.
export function cssVariablesApply(root = document) {
  for (const element of root.querySelectorAll("[data-vars]")) {
    let vars;
    try {
      vars = JSON.parse(element.dataset.vars);
    } catch (error) {
      continue;
    }
    for (const [name, value] of Object.entries(vars)) {
      if (typeof value === "number" && Number.isFinite(value)) element.style.setProperty(`--${name}`, String(value));
    }
  }
}

cssVariablesApply();

// A conversation as the labeling board and the review page show it: one section per turn, the
// role's name (`roleNames`, translated by the page) above its text, server-sanitised HTML when
// the API sent it (?render=html), else plain text.
export function conversationTurns(messages, roleNames) {
  return messages.map((message, index) => {
    const turn = document.createElement("section");
    turn.className = `turn turn-${message.role}`;
    if (index === messages.length - 1) turn.classList.add("turn-last");
    const who = document.createElement("div");
    who.className = "turn-role";
    who.textContent = roleNames[message.role] || message.role;
    const body = document.createElement("div");
    body.className = "md turn-body";
    if (typeof message.html === "string") body.innerHTML = message.html; // sanitised by the server
    else body.textContent = message.content;
    turn.append(who, body);
    return turn;
  });
}
