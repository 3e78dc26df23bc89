// One answer card of the ranking board, as DOM. What its controls do belongs to the board:
// ranking.js passes handlers in `on` (focus, focusCard, rate, tie, flag, dragStart, dragEnd).
import { FLAGS, RATINGS } from "./page.js";

export function buildCard(candidate, on) {
  const card = document.createElement("li");
  card.className = "answer-card";
  card.tabIndex = 0;
  card.dataset.id = candidate.id;
  card.dataset.label = candidate.label;

  const rail = document.createElement("div");
  rail.className = "card-rail";
  rail.draggable = true;
  rail.title = "Drag to reorder";
  const rank = document.createElement("span");
  rank.className = "rank-badge";
  const letter = document.createElement("span");
  letter.className = "letter-badge";
  letter.textContent = candidate.label;
  const tieMark = document.createElement("span");
  tieMark.className = "tie-mark";
  tieMark.textContent = "tie";
  const grip = document.createElement("span");
  grip.className = "grip";
  grip.setAttribute("aria-hidden", "true");
  grip.textContent = "⠿";
  rail.append(rank, letter, tieMark, grip);

  const main = document.createElement("div");
  main.className = "card-main";
  const body = document.createElement("div");
  body.className = "md answer-body";
  if (typeof candidate.html === "string") body.innerHTML = candidate.html; // sanitised by the server
  else body.textContent = candidate.text;

  const controls = document.createElement("div");
  controls.className = "card-controls";
  controls.append(buildRating(candidate, on), buildTieButton(on), buildFlags(on));
  main.append(body, controls);
  card.append(rail, main);

  rail.addEventListener("dragstart", (event) => {
    on.dragStart();
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", candidate.label);
    event.dataTransfer.setDragImage(card, 28, 28);
    card.classList.add("dragging");
  });
  rail.addEventListener("dragend", () => {
    card.classList.remove("dragging");
    on.dragEnd();
  });
  card.addEventListener("focusin", on.focus);
  return card;
}

function buildRating(candidate, on) {
  const group = document.createElement("div");
  group.className = "rating";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", `Rating of answer ${candidate.label}, 1 very bad to 7 excellent`);
  const caption = document.createElement("span");
  caption.className = "control-label";
  caption.textContent = "Rating";
  group.append(caption);
  for (const value of RATINGS) {
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

// Clicking a rating or the tie button leaves the focus on the card, so the next key
// (a digit, t, Enter to submit) still means "this answer".
function keepCardFocus(button, on) {
  button.addEventListener("mousedown", (event) => {
    event.preventDefault();
    on.focusCard();
  });
}

function buildFlags(on) {
  const box = document.createElement("fieldset");
  box.className = "flags";
  const legend = document.createElement("legend");
  legend.className = "control-label";
  legend.textContent = "Flags";
  box.append(legend);
  for (const flag of FLAGS) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = flag.name;
    input.addEventListener("change", () => {
      on.flag(flag.name, input.checked);
      label.classList.toggle("checked", input.checked);
    });
    label.append(input, ` ${flag.label}`);
    box.append(label);
  }
  return box;
}

function buildTieButton(on) {
  const button = document.createElement("button");
  button.type = "button";
  button.tabIndex = -1;
  button.className = "tie-button";
  button.textContent = "Tie with above";
  button.title = "Same quality as the answer above (t)";
  keepCardFocus(button, on);
  button.addEventListener("click", on.tie);
  return button;
}
