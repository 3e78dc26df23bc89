// The ranking board, on the annotate page (a new ranking, ranking.js) and the progress page
// (editing a submitted one, progress.js): one card per answer (cards.js draws them), best first,
// reordered by dragging a card's rail (mouse, pen or finger: pointer events), by its ↑ ↓
// buttons, or by the keyboard (handleKey), with ties, ratings, flags and "none acceptable".
//
// The order is a flat list of answer ids, best first; tied[id] puts an answer in the same group
// as the answer above it. groups() turns that into the API's [[id…], [id…]].
import { buildCard } from "./cards.js";

const TEXT = {
  moved: (label, rank, count) => interpolate(gettext("Answer %(label)s is now rank %(rank)s of %(count)s."), { label, rank, count }, true),
  topCannotTie: gettext("The top answer has no answer above it to tie with."),
  tied: (label) => interpolate(gettext("Answer %(label)s is tied with the answer above."), { label }, true),
  untied: (label) => interpolate(gettext("Answer %(label)s is no longer tied."), { label }, true),
  rated: (label, value) => interpolate(gettext("Answer %(label)s rated %(value)s."), { label, value }, true),
  ratingRemoved: (label) => interpolate(gettext("Rating of answer %(label)s removed."), { label }, true),
  flagged: (label, flag) => interpolate(gettext("Answer %(label)s flagged: %(flag)s."), { label, flag }, true),
  unflagged: (label, flag) => interpolate(gettext("Answer %(label)s no longer flagged: %(flag)s."), { label, flag }, true),
  noneMarked: gettext("Marked: none of these answers is acceptable."),
  noneUnmarked: gettext("Unmarked: none acceptable."),
  focusFirst: gettext("Focus an answer first: press its letter."),
  // A card's name for screen readers: whole sentences, joined.
  cardRank: (label, rank) => interpolate(gettext("Answer %(label)s: rank %(rank)s."), { label, rank }, true),
  cardTied: gettext("Tied with the answer above."),
  cardRated: (value) => interpolate(gettext("Rated %(value)s."), { value }, true),
};

const DRAG_START_PX = 6; // a press that moves less is a click or a tap, not a drag
const SCROLL_EDGE_PX = 56; // dragging this close to the window's top or bottom scrolls it

// list: the <ol> the cards go in; none: the "none acceptable" checkbox; candidates: [{id, label,
// html or text}] in the order shown; initial: a stored ranking to start from ({ranking, ratings,
// flags, none_acceptable}), or null for the order shown with nothing rated; flagNames: [{name,
// label}]; ratingValues: [1…7]; ratingScale: the scale in words; announce(message): tell
// screen-reader users; onOrderChange(): the order or a tie changed.
export function createBoard({
  list,
  none,
  candidates,
  initial = null,
  flagNames,
  ratingValues,
  ratingScale = "",
  announce,
  onOrderChange = () => {},
}) {
  const cards = {};
  const order = [];
  const tied = {};
  const ratings = {};
  const flags = {};
  let focusedId = null;
  let touched = false; // the order or a tie was changed here
  let drag = null; // {id, rail, pointerId, startY, moving}

  // --- the starting state ------------------------------------------------------------------------
  const known = new Set(candidates.map((candidate) => candidate.id));
  for (const group of (initial && initial.ranking) || []) {
    group.forEach((id, index) => {
      if (!known.has(id) || order.includes(id)) return;
      order.push(id);
      if (index > 0) tied[id] = true;
    });
  }
  for (const candidate of candidates) if (!order.includes(candidate.id)) order.push(candidate.id);
  for (const [id, value] of Object.entries((initial && initial.ratings) || {})) if (known.has(id)) ratings[id] = value;
  for (const [id, names] of Object.entries((initial && initial.flags) || {})) if (known.has(id)) flags[id] = [...names];
  none.checked = Boolean(initial && initial.none_acceptable);

  const options = { flagNames, ratingValues, ratingScale };
  list.replaceChildren();
  for (const candidate of candidates) {
    const id = candidate.id;
    cards[id] = buildCard(
      candidate,
      {
        focus: () => { focusedId = id; },
        focusCard: () => focusCard(id, { scroll: false }),
        rate: (value) => setRating(id, value),
        tie: () => toggleTie(id),
        move: (delta) => moveBy(id, delta),
        flag: (name, checked) => setFlag(id, name, checked),
        dragStart: (event, rail) => dragStart(id, event, rail),
      },
      options,
    );
  }
  layout();

  // --- reading it --------------------------------------------------------------------------------
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

  function labelOf(id) {
    return cards[id] ? cards[id].dataset.label : "?";
  }

  // Put the cards in order and show every badge, rating and flag; called after each change.
  function layout() {
    const active = document.activeElement;
    let rank = 0;
    order.forEach((id, index) => {
      if (index === 0) tied[id] = false;
      if (!tied[id]) rank += 1;
      const card = cards[id];
      card.classList.toggle("is-tied", Boolean(tied[id]));
      card.querySelector(".rank-badge").textContent = rank;
      const tieButton = card.querySelector(".tie-button");
      tieButton.setAttribute("aria-pressed", String(Boolean(tied[id])));
      tieButton.disabled = index === 0;
      card.querySelector(".move-up").disabled = index === 0;
      card.querySelector(".move-down").disabled = index === order.length - 1;
      for (const button of card.querySelectorAll(".rating-button")) {
        button.setAttribute("aria-pressed", String(Number(button.dataset.value) === ratings[id]));
      }
      for (const input of card.querySelectorAll(".flags input")) {
        input.checked = (flags[id] || []).includes(input.value);
        input.closest("label").classList.toggle("checked", input.checked);
      }
      const name = [TEXT.cardRank(labelOf(id), rank)];
      if (tied[id]) name.push(TEXT.cardTied);
      if (ratings[id]) name.push(TEXT.cardRated(ratings[id]));
      card.setAttribute("aria-label", name.join(" "));
      list.append(card); // moves it into place
    });
    if (active && list.contains(active) && document.activeElement !== active) active.focus({ preventScroll: true });
  }

  function focusCard(id, { scroll = true } = {}) {
    if (!id || !cards[id]) return;
    focusedId = id;
    cards[id].focus({ preventScroll: true });
    if (scroll) cards[id].scrollIntoView({ block: "nearest" });
  }

  function focusedCardId() {
    const active = document.activeElement;
    const card = active && active.closest ? active.closest(".answer-card") : null;
    return card && list.contains(card) ? card.dataset.id : focusedId;
  }

  // Focus the answer delta places from id (from the top when there is no id), within the list.
  function focusStep(id, delta) {
    const index = id ? order.indexOf(id) + delta : 0;
    focusCard(order[Math.max(0, Math.min(order.length - 1, index))]);
  }

  // Focus the answer with this letter; whether there is one.
  function focusLabel(letter) {
    const target = order.find((id) => labelOf(id) === letter);
    if (target) focusCard(target);
    return Boolean(target);
  }

  // --- changing it -------------------------------------------------------------------------------
  function orderChanged() {
    touched = true;
    onOrderChange();
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
    orderChanged();
    layout();
    focusCard(id);
    announce(TEXT.moved(labelOf(id), rankOf(id), order.length));
  }

  function moveBy(id, delta) {
    const target = order.indexOf(id) + delta;
    if (target < 0 || target >= order.length) return;
    moveTo(id, target);
  }

  function toggleTie(id) {
    if (order.indexOf(id) === 0) {
      announce(TEXT.topCannotTie);
      return;
    }
    tied[id] = !tied[id];
    orderChanged();
    layout();
    focusCard(id);
    announce(tied[id] ? TEXT.tied(labelOf(id)) : TEXT.untied(labelOf(id)));
  }

  function setRating(id, value) {
    if (ratings[id] === value) delete ratings[id];
    else ratings[id] = value;
    layout();
    announce(ratings[id] ? TEXT.rated(labelOf(id), value) : TEXT.ratingRemoved(labelOf(id)));
  }

  function setFlag(id, name, checked) {
    const chosen = new Set(flags[id] || []);
    if (checked) chosen.add(name);
    else chosen.delete(name);
    flags[id] = [...chosen];
    layout();
    const flag = flagNames.find((f) => f.name === name);
    const words = flag ? flag.label : name;
    announce(checked ? TEXT.flagged(labelOf(id), words) : TEXT.unflagged(labelOf(id), words));
  }

  function toggleNoneAcceptable() {
    none.checked = !none.checked;
    announce(none.checked ? TEXT.noneMarked : TEXT.noneUnmarked);
  }

  // --- dragging by the rail: the drop position is the gap between the cards nearest the pointer ---
  function dropIndex(clientY) {
    let index = 0;
    for (const id of order) {
      if (id === drag.id) continue;
      const box = cards[id].getBoundingClientRect();
      if (clientY > box.top + box.height / 2) index += 1;
    }
    return index;
  }

  function clearDropMarker() {
    for (const card of Object.values(cards)) card.classList.remove("drop-before", "drop-after", "dragging");
  }

  function markDrop(index) {
    clearDropMarker();
    cards[drag.id].classList.add("dragging");
    const others = order.filter((id) => id !== drag.id);
    if (index < others.length) cards[others[index]].classList.add("drop-before");
    else if (others.length) cards[others[others.length - 1]].classList.add("drop-after");
  }

  function dragStart(id, event, rail) {
    if (drag || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault(); // no text selection; the card takes the focus below
    focusCard(id, { scroll: false });
    drag = { id, rail, pointerId: event.pointerId, startY: event.clientY, moving: false };
    rail.setPointerCapture(event.pointerId);
    rail.addEventListener("pointermove", dragMove);
    rail.addEventListener("pointerup", dragEnd);
    rail.addEventListener("pointercancel", dragStop);
  }

  function dragMove(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    if (!drag.moving && Math.abs(event.clientY - drag.startY) < DRAG_START_PX) return;
    drag.moving = true;
    if (event.clientY < SCROLL_EDGE_PX) window.scrollBy(0, -24);
    else if (event.clientY > window.innerHeight - SCROLL_EDGE_PX) window.scrollBy(0, 24);
    markDrop(dropIndex(event.clientY));
  }

  function dragEnd(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const { id, moving } = drag;
    const index = moving ? dropIndex(event.clientY) : -1;
    dragStop();
    if (moving && index !== order.indexOf(id)) moveTo(id, index);
  }

  function dragStop() {
    if (!drag) return;
    const { rail, pointerId } = drag;
    rail.removeEventListener("pointermove", dragMove);
    rail.removeEventListener("pointerup", dragEnd);
    rail.removeEventListener("pointercancel", dragStop);
    if (rail.hasPointerCapture(pointerId)) rail.releasePointerCapture(pointerId);
    drag = null;
    clearDropMarker();
  }

  // --- the keyboard: the caller passes keys on when no text field has them ----------------------
  // Returns whether the key was one of the board's.
  function handleKey(event) {
    const key = event.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    const id = focusedCardId();
    if (key === "ArrowUp" || key === "ArrowDown") {
      const delta = key === "ArrowUp" ? -1 : 1;
      if (!event.shiftKey) focusStep(id, delta);
      else if (id) moveBy(id, delta);
      return true;
    }
    if (lower === "k" || lower === "j") {
      if (id) moveBy(id, lower === "k" ? -1 : 1);
      return true;
    }
    if (lower === "t") {
      if (id) toggleTie(id);
      return true;
    }
    if (lower === "n") {
      toggleNoneAcceptable();
      return true;
    }
    // Shift+1, Shift+2… flag the focused answer; the physical key, since Shift+1 is "!" or "+".
    const digit = /^Digit([1-9])$/.exec(event.code || "");
    if (event.shiftKey && digit && Number(digit[1]) <= flagNames.length) {
      const flag = flagNames[Number(digit[1]) - 1].name;
      if (id) setFlag(id, flag, !(flags[id] || []).includes(flag));
      else announce(TEXT.focusFirst);
      return true;
    }
    if (ratingValues.includes(Number(key))) {
      if (id) setRating(id, Number(key));
      else announce(TEXT.focusFirst);
      return true;
    }
    if (/^[a-z]$/.test(lower)) return focusLabel(lower.toUpperCase());
    return false;
  }

  function flagsPayload() {
    const result = {};
    for (const [id, names] of Object.entries(flags)) if (names.length) result[id] = names;
    return result;
  }

  return {
    handleKey,
    focusFirst: () => focusCard(order[0], { scroll: false }),
    focus: () => focusCard(focusedId || order[0], { scroll: false }),
    // Whether the order or a tie was changed since the board was set up.
    touched: () => touched,
    body: () => ({ ranking: groups(), ratings: { ...ratings }, flags: flagsPayload(), none_acceptable: none.checked }),
    // Groups of answer ids in letters, best first: "B › A = C".
    summary: (ranking) => ranking.map((group) => group.map(labelOf).join(" = ")).join(" › "),
  };
}
