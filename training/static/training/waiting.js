// Pages that wait for the interactive worker (a playground turn, an arena battle): poll the
// progress URL on [data-progress-url], show what it waits for, and reload once it has finished,
// when the server renders the answer (or the error). Without script, the page refreshes itself.
import { api } from "../labeling/common.js";

const box = document.querySelector("[data-progress-url]");
const text = box && box.querySelector("[data-waiting-for]");

async function poll() {
  const { ok, data } = await api("GET", box.dataset.progressUrl);
  if (ok && data.finished) {
    window.location.reload();
    return;
  }
  if (text) text.textContent = ok ? data.waiting_for : data.detail;
  window.setTimeout(poll, ok ? 1000 : 5000);
}

if (box) window.setTimeout(poll, 700);
