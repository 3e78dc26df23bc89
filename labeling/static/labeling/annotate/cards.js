// One answer card of the ranking board, as DOM. What its controls do belongs to the board
// (board.js): it passes handlers in `on` (focus, focusCard, rate, tie, flag, move, dragStart) and
// what the page knows in `options` (ratingValues, flagNames, ratingScale).
const TEXT = {
  dragHandle: gettext("Drag to reorder"),
  tieMark: gettext("tie"),
  rating: gettext("Rating"),
  ratingGroup: (label) => interpolate(gettext("Rating of answer %(label)s"), { label }, true),
  flags: gettext("Flags"),
  flagShortcut: (number) => interpolate(gettext("Shift+%(number)s flags the focused answer."), { number }, true),
  tieButton: gettext("Tie with above"),
  tieTitle: gettext("Same quality as the answer above (t)"),
  moveUp: (label) => interpolate(gettext("Move answer %(label)s up"), { label }, true),
  moveDown: (label) => interpolate(gettext("Move answer %(label)s down"), { label }, true),
  moveUpTitle: gettext("Move up (Shift+↑ or k)"),
  moveDownTitle: gettext("Move down (Shift+↓ or j)"),
};

export function buildCard(candidate, on, options) {
  const card = document.createElement("li");
  card.className = "answer-card";
  card.tabIndex = 0;
  card.dataset.id = candidate.id;
  card.dataset.label = candidate.label;

  // The rail is the drag handle, for a mouse, a pen or a finger (pointer events, board.js).
  const rail = document.createElement("div");
  rail.className = "card-rail";
  rail.title = TEXT.dragHandle;
  const rank = document.createElement("span");
  rank.className = "rank-badge";
  const letter = document.createElement("span");
  letter.className = "letter-badge";
  letter.textContent = candidate.label;
  const tieMark = document.createElement("span");
  tieMark.className = "tie-mark";
  tieMark.textContent = TEXT.tieMark;
  const grip = document.createElement("span");
  grip.className = "grip";
  grip.setAttribute("aria-hidden", "true");
  grip.textContent = "⠿";
  rail.append(rank, letter, tieMark, grip);
  rail.addEventListener("pointerdown", (event) => on.dragStart(event, rail));

  const main = document.createElement("div");
  main.className = "card-main";
  const body = document.createElement("div");
  body.className = "md answer-body";
  if (typeof candidate.html === "string") body.innerHTML = candidate.html; // sanitised by the server
  else body.textContent = candidate.text;

  const controls = document.createElement("div");
  controls.className = "card-controls";
  controls.append(
    buildRating(candidate, on, options),
    buildTieButton(on),
    buildMoveButtons(candidate, on),
    buildFlags(on, options),
  );
  main.append(body, controls);
  card.append(rail, main);
  card.addEventListener("focusin", on.focus);
  return card;
}

function buildRating(candidate, on, options) {
  const group = document.createElement("div");
  group.className = "rating";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", TEXT.ratingGroup(candidate.label));
  if (options.ratingScale) group.title = options.ratingScale; // the scale in words, one source
  const caption = document.createElement("span");
  caption.className = "control-label";
  caption.textContent = TEXT.rating;
  group.append(caption);
  for (const value of options.ratingValues) {
    const button = document.createElement("button");
    button.type = "button";
    button.tabIndex = -1; // the digit keys rate the focused card; Tab stays short
    button.className = "rating-button";
    button.dataset.value = value;
    button.textContent = value;
    button.setAttribute("aria-pressed", "false");
    keepCardFocus(button, on);
    button.addEventListener("click", () => on.rate(value));
    group.append(button);
  }
  return group;
}

// Clicking a rating, the tie or a move button leaves the focus on the card, so the next key
// (a digit, t, Enter to submit) still means "this answer".
function keepCardFocus(button, on) {
  button.addEventListener("mousedown", (event) => {
    event.preventDefault();
    on.focusCard();
  });
}

function buildFlags(on, options) {
  const box = document.createElement("fieldset");
  box.className = "flags";
  const legend = document.createElement("legend");
  legend.className = "control-label";
  legend.textContent = TEXT.flags;
  box.append(legend);
  options.flagNames.forEach((flag, index) => {
    const label = document.createElement("label");
    label.title = TEXT.flagShortcut(index + 1);
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = flag.name;
    input.addEventListener("change", () => on.flag(flag.name, input.checked));
    label.append(input, ` ${flag.label}`);
    box.append(label);
  });
  return box;
}

function buildTieButton(on) {
  const button = document.createElement("button");
  button.type = "button";
  button.tabIndex = -1;
  button.className = "tie-button";
  button.textContent = TEXT.tieButton;
  button.title = TEXT.tieTitle;
  keepCardFocus(button, on);
  button.addEventListener("click", on.tie);
  return button;
}

// Large enough for a finger: a tablet annotator reorders with these as well as by dragging.
function buildMoveButtons(candidate, on) {
  const group = document.createElement("div");
  group.className = "card-move";
  for (const [delta, symbol, name, title] of [
    [-1, "↑", TEXT.moveUp(candidate.label), TEXT.moveUpTitle],
    [1, "↓", TEXT.moveDown(candidate.label), TEXT.moveDownTitle],
  ]) {
    const button = document.createElement("button");
    button.type = "button";
    button.tabIndex = -1; // Shift+↑ / Shift+↓ move the focused card
    button.className = delta < 0 ? "move-button move-up" : "move-button move-down";
    button.textContent = symbol;
    button.title = title;
    button.setAttribute("aria-label", name);
    keepCardFocus(button, on);
    button.addEventListener("click", () => on.move(delta));
    group.append(button);
  }
  return group;
}
