// The answer editor, on the annotate page (a new demonstration, demonstration.js adds autosave)
// and the progress page (editing a submitted one, progress.js): write, preview it as the server
// renders it (sanitised), and a character counter against the limit.
import { formatNumber } from "../common.js";

const TEXT = {
  counter: (count, max) => interpolate(gettext("%(count)s / %(max)s characters"), { count, max }, true),
  overLimit: (over, max) => interpolate(gettext("Your answer is %(over)s characters over the limit of %(max)s. Shorten it before you send it."), { over, max }, true),
  nothingToPreview: gettext("Nothing to preview yet."),
  rendering: gettext("Rendering…"),
};

export const charCount = (text) => Array.from(text).length; // code points, as the server counts

// text: the textarea; preview: where the rendering goes; tabWrite, tabPreview: the two tabs;
// counter, overLimit: where the count and the over-the-limit message go; maxChars: the limit;
// render(text): resolves to the API's {ok, data: {html} or {detail}}.
export function createEditor({ text, preview, tabWrite, tabPreview, counter, overLimit, maxChars, render }) {
  function updateCounter() {
    const count = charCount(text.value);
    const over = count > maxChars;
    counter.textContent = TEXT.counter(formatNumber(count), formatNumber(maxChars));
    counter.classList.toggle("over", over);
    overLimit.hidden = !over;
    overLimit.textContent = over ? TEXT.overLimit(formatNumber(count - maxChars), formatNumber(maxChars)) : "";
    return count;
  }

  async function selectTab(which) {
    const previewing = which === "preview";
    tabWrite.setAttribute("aria-selected", String(!previewing));
    tabPreview.setAttribute("aria-selected", String(previewing));
    text.hidden = previewing;
    preview.hidden = !previewing;
    if (!previewing) return;
    if (!text.value.trim()) {
      preview.textContent = TEXT.nothingToPreview;
      return;
    }
    preview.textContent = TEXT.rendering;
    const res = await render(text.value);
    if (res.ok) preview.innerHTML = res.data.html; // sanitised by the server
    else preview.textContent = res.data.detail;
  }

  tabWrite.addEventListener("click", () => selectTab("write").then(() => text.focus()));
  tabPreview.addEventListener("click", () => selectTab("preview"));
  text.addEventListener("input", updateCounter);
  updateCounter();

  return {
    selectTab,
    updateCounter,
    // Why the text cannot be sent as it is (empty is the caller's to say), or "".
    tooLong: () => (updateCounter() > maxChars ? overLimit.textContent : ""),
  };
}
