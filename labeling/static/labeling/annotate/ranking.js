// The annotate page's ranking task: the board (board.js, shared with the progress page) on this
// page's list, started from the order the answers were shown in.
import { createBoard } from "./board.js";
import { FLAGS, RATINGS, RATING_SCALE, el, show, hide, announce, hideOrderConfirm } from "./page.js";

let board = null;

export function setupRanking(candidates) {
  hide(el.demoPanel);
  show(el.rankPanel);
  board = createBoard({
    list: el.cards,
    none: el.none,
    candidates,
    flagNames: FLAGS,
    ratingValues: RATINGS,
    ratingScale: RATING_SCALE,
    announce,
    // "Submit it as shown?" no longer applies once the order changed.
    onOrderChange: () => hideOrderConfirm(),
  });
  board.focusFirst();
}

export const rankingBody = () => board.body();

// Whether the annotator changed the order or a tie: an untouched order is submitted only when
// they confirm it (queue.js).
export const rankingTouched = () => Boolean(board && board.touched());

// The board's keys (keyboard.js passes them on); whether the key was one of them.
export const rankingKey = (event) => Boolean(board && board.handleKey(event));

export const focusBoard = () => board && board.focus();
