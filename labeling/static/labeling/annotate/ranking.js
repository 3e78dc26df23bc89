// The ranking board: one card per answer (cards.js draws them), best first, reordered by drag and
// drop or the keyboard (keyboard.js maps the keys to the actions exported here), with ties,
// ratings, flags and "none acceptable".
//
// The order is a flat list of answer ids, best first; tied[id] puts an answer in the same group
// as the answer above it. groups() turns that into the API's [[id…], [id…]].
import { buildCard } from "./cards.js";
import { el, show, hide, announce } from "./page.js";

let order = [];
let tied = {};
let ratings = {};
let flags = {};
let cards = {};
let focusedId = null;
let dragId = null;

export function setupRanking(candidates) {
  hide(el.demoPanel);
  show(el.rankPanel);
  order = candidates.map((c) => c.id);
  tied = {};
  ratings = {};
  flags = {};
  cards = {};
  focusedId = null;
  el.none.checked = false;
  el.cards.replaceChildren();
  for (const candidate of candidates) cards[candidate.id] = makeCard(candidate);
  layout();
  focusCard(order[0], { scroll: false });
}

// One card per answer; what its controls do is the board's.
function makeCard(candidate) {
  const id = candidate.id;
  return buildCard(candidate, {
    focus: () => { focusedId = id; },
    focusCard: () => focusCard(id, { scroll: false }),
    rate: (value) => setRating(id, value),
    tie: () => toggleTie(id),
    flag: (name, checked) => {
      const chosen = new Set(flags[id] || []);
      if (checked) chosen.add(name);
      else chosen.delete(name);
      flags[id] = [...chosen];
    },
    dragStart: () => { dragId = id; },
    dragEnd: () => {
      dragId = null;
      clearDropMarker();
    },
  });
}

function groups() {
  const result = [];
  order.forEach((id, index) => {
    if (index > 0 && tied[id]) result[result.length - 1].push(id);
    else result.push([id]);
  });
  return result;
}

function rankOf(id) {
  return groups().findIndex((group) => group.includes(id)) + 1;
}

// Put the cards in order and refresh every badge; called after each change.
function layout() {
  const active = document.activeElement;
  let rank = 0;
  order.forEach((id, index) => {
    if (index === 0) tied[id] = false;
    if (!tied[id]) rank += 1;
    const card = cards[id];
    const label = card.dataset.label;
    card.classList.toggle("is-tied", Boolean(tied[id]));
    card.querySelector(".rank-badge").textContent = rank;
    const tieButton = card.querySelector(".tie-button");
    tieButton.setAttribute("aria-pressed", String(Boolean(tied[id])));
    tieButton.disabled = index === 0;
    const rated = ratings[id] ? `, rated ${ratings[id]}` : "";
    const tie = tied[id] ? ", tied with the answer above" : "";
    card.setAttribute("aria-label", `Answer ${label}: rank ${rank}${tie}${rated}`);
    el.cards.append(card); // moves it into place
  });
  if (active && el.cards.contains(active) && document.activeElement !== active) active.focus({ preventScroll: true });
}

function focusCard(id, { scroll = true } = {}) {
  if (!id || !cards[id]) return;
  focusedId = id;
  cards[id].focus({ preventScroll: true });
  if (scroll) cards[id].scrollIntoView({ block: "nearest" });
}

// --- actions for the keyboard map -------------------------------------------------------------
export function focusedCardId() {
  const card = document.activeElement && document.activeElement.closest && document.activeElement.closest(".answer-card");
  return card ? card.dataset.id : focusedId;
}

// Focus the answer delta places from id (from the top when there is no id), within the list.
export function focusStep(id, delta) {
  const index = id ? order.indexOf(id) + delta : 0;
  focusCard(order[Math.max(0, Math.min(order.length - 1, index))]);
}

// Focus the answer with this letter; whether there is one.
export function focusLabel(letter) {
  const target = order.find((cid) => cards[cid].dataset.label === letter);
  if (target) focusCard(target);
  return Boolean(target);
}

// Take an answer out of the order. If it headed a tie group, the next answer heads it now.
function detach(id) {
  const index = order.indexOf(id);
  const next = order[index + 1];
  if (!tied[id] && next !== undefined && tied[next]) tied[next] = false;
  tied[id] = false;
  order.splice(index, 1);
}

function moveTo(id, index) {
  detach(id);
  order.splice(Math.max(0, Math.min(index, order.length)), 0, id);
  layout();
  focusCard(id);
  announce(`Answer ${cards[id].dataset.label} is now rank ${rankOf(id)} of ${order.length}.`);
}

export function moveBy(id, delta) {
  const target = order.indexOf(id) + delta;
  if (target < 0 || target >= order.length) return;
  moveTo(id, target);
}

export function toggleTie(id) {
  if (order.indexOf(id) === 0) {
    announce("The top answer has no answer above it to tie with.");
    return;
  }
  tied[id] = !tied[id];
  layout();
  focusCard(id);
  const label = cards[id].dataset.label;
  announce(tied[id] ? `Answer ${label} is tied with the answer above.` : `Answer ${label} is no longer tied.`);
}

export function setRating(id, value) {
  ratings[id] = ratings[id] === value ? undefined : value;
  if (ratings[id] === undefined) delete ratings[id];
  for (const button of cards[id].querySelectorAll(".rating-button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.value) === ratings[id]));
  }
  layout();
  announce(ratings[id] ? `Answer ${cards[id].dataset.label} rated ${value}.` : "Rating removed.");
}

export function toggleNoneAcceptable() {
  el.none.checked = !el.none.checked;
  announce(el.none.checked ? "Marked: none of these answers is acceptable." : "Unmarked: none acceptable.");
}

// --- drag and drop: the drop position is the gap between the cards nearest the pointer ---------
function dropIndex(clientY) {
  const others = order.filter((id) => id !== dragId);
  let index = 0;
  for (const id of others) {
    const box = cards[id].getBoundingClientRect();
    if (clientY > box.top + box.height / 2) index += 1;
  }
  return index;
}

function clearDropMarker() {
  for (const card of Object.values(cards)) card.classList.remove("drop-before", "drop-after");
}

function markDrop(index) {
  clearDropMarker();
  const others = order.filter((id) => id !== dragId);
  if (index < others.length) cards[others[index]].classList.add("drop-before");
  else if (others.length) cards[others[others.length - 1]].classList.add("drop-after");
}

export function initRanking() {
  el.cards.addEventListener("dragover", (event) => {
    if (!dragId) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    markDrop(dropIndex(event.clientY));
  });
  el.cards.addEventListener("drop", (event) => {
    if (!dragId) return;
    event.preventDefault();
    const id = dragId;
    const index = dropIndex(event.clientY);
    clearDropMarker();
    moveTo(id, index);
  });
}

// --- the submission ---------------------------------------------------------------------------
function flagsPayload() {
  const result = {};
  for (const [id, names] of Object.entries(flags)) if (names.length) result[id] = names;
  return result;
}

export function rankingBody() {
  return {
    ranking: groups(),
    ratings: { ...ratings },
    flags: flagsPayload(),
    none_acceptable: el.none.checked,
  };
}
