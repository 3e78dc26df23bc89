// The annotate page: lease a task, show the conversation, write a demonstration or rank the
// answers, submit, and load the next one. Prompts and answers are untrusted: they are only ever
// shown through the API's sanitised `html` fields, everything else goes in with textContent.
"use strict";
(function () {
  const root = document.getElementById("annotate");
  if (!root) return;
  const { api, clock, uuid } = window.Yushan;

  const API = root.dataset.api;
  const PROJECT = root.dataset.project;
  const MAX_CHARS = Number(root.dataset.maxChars);
  const FLAGS = JSON.parse(document.getElementById("flag-names").textContent);
  const RATINGS = JSON.parse(document.getElementById("rating-values").textContent);
  const ROLE_NAMES = { system: "System", user: "User", assistant: "Assistant" };
  const AUTOSAVE_DELAY_MS = 1000;
  const HEARTBEAT_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const el = {
    progress: $("progress-counter"), lastAction: $("last-action"), lease: $("lease"), guidelines: $("guidelines"),
    notice: $("notice"), noticeText: $("notice-text"), noticeRetry: $("notice-retry"), loading: $("loading"),
    task: $("task"), taskId: $("task-id"), kindPill: $("kind-pill"), conversation: $("conversation"),
    demoPanel: $("demo-panel"), text: $("demo-text"), preview: $("demo-preview"),
    tabWrite: $("tab-write"), tabPreview: $("tab-preview"), counter: $("char-count"),
    saveStatus: $("save-status"), overLimit: $("over-limit"),
    rankPanel: $("rank-panel"), cards: $("cards"), none: $("none-acceptable"),
    error: $("form-error"), submit: $("submit"), submitStatus: $("submit-status"), skipOpen: $("skip-open"),
    skipDialog: $("skip-dialog"), skipForm: $("skip-form"), skipReason: $("skip-reason"),
    skipWarning: $("skip-draft-warning"), skipConfirm: $("skip-confirm"), skipCancel: $("skip-cancel"),
    help: $("help-dialog"), helpOpen: $("help-open"), announcer: $("announcer"),
  };

  let task = null; // the leased task, as GET tasks/next/ returned it
  let busy = false; // a submit or skip is in flight
  let heartbeatTimer = null;

  // --- local storage: the fallback copy of drafts, and each task's client_id -----------------
  const store = {
    get(key) {
      try {
        return JSON.parse(localStorage.getItem(key));
      } catch (error) {
        return null;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(key, JSON.stringify(value));
      } catch (error) {
        /* storage full or disabled: the server copy remains */
      }
    },
    remove(key) {
      try {
        localStorage.removeItem(key);
      } catch (error) {
        /* nothing to clean */
      }
    },
  };
  const draftKey = (taskId) => `yushan:draft:${taskId}`;
  const clientKey = (taskId) => `yushan:client:${taskId}`;
  const clientIds = {};

  // One client_id per task, reused by every retry, so a repeated submit is answered with the
  // first one's result instead of creating a second record.
  function clientIdFor(taskId) {
    if (!clientIds[taskId]) clientIds[taskId] = store.get(clientKey(taskId)) || uuid();
    store.set(clientKey(taskId), clientIds[taskId]);
    return clientIds[taskId];
  }

  function forgetTask(taskId) {
    store.remove(draftKey(taskId));
    store.remove(clientKey(taskId));
    delete clientIds[taskId];
  }

  // --- small view helpers ---------------------------------------------------------------------
  const show = (node) => { node.hidden = false; };
  const hide = (node) => { node.hidden = true; };

  function announce(message) {
    el.announcer.textContent = "";
    window.setTimeout(() => { el.announcer.textContent = message; }, 30);
  }

  function showError(message) {
    el.error.textContent = message;
    show(el.error);
  }

  function clearError() {
    el.error.textContent = "";
    hide(el.error);
  }

  function showNotice(message, { retry = false } = {}) {
    hide(el.task);
    hide(el.loading);
    el.noticeText.textContent = message;
    el.noticeRetry.hidden = !retry;
    show(el.notice);
  }

  function setBusy(on) {
    busy = on;
    el.submit.disabled = on;
    el.skipOpen.disabled = on;
  }

  function showLease(iso) {
    el.lease.textContent = `Reserved for you until ${clock(iso)}`;
    el.lease.title = "The task returns to the pool if this page stops sending heartbeats.";
  }

  // --- the queue ------------------------------------------------------------------------------
  async function refreshProgress() {
    const res = await api("GET", `${API}me/progress/?project=${PROJECT}`);
    if (res.ok) el.progress.textContent = `${res.data.today} done today · ${res.data.total} in total`;
  }

  async function loadNext() {
    stopHeartbeat();
    task = null;
    hide(el.task);
    hide(el.notice);
    show(el.loading);
    const res = await api("GET", `${API}tasks/next/?project=${PROJECT}&render=html`);
    hide(el.loading);
    if (res.status === 204) {
      showNotice("All done — nothing left for you in this project. Thank you!", { retry: true });
      el.lease.textContent = "";
    } else if (!res.ok) {
      showNotice(res.data.detail, { retry: true }); // 409: the project is paused
      el.lease.textContent = "";
    } else {
      startTask(res.data);
    }
  }

  function startTask(data) {
    task = data;
    clearError();
    el.taskId.textContent = `#${data.id}`;
    el.kindPill.textContent = data.kind === "ranking" ? "Ranking" : "Demonstration";
    el.kindPill.className = `pill pill-${data.kind}`;
    renderConversation(data.messages);
    show(el.task);
    if (data.kind === "ranking") setupRanking(data.candidates);
    else setupDemonstration(data);
    showLease(data.lease_expires_at);
    startHeartbeat();
    if (el.task.getBoundingClientRect().top < 0) el.task.scrollIntoView({ block: "start" });
  }

  function renderConversation(messages) {
    const turns = messages.map((message, index) => {
      const turn = document.createElement("section");
      turn.className = `turn turn-${message.role}`;
      if (index === messages.length - 1) turn.classList.add("turn-last");
      const who = document.createElement("div");
      who.className = "turn-role";
      who.textContent = ROLE_NAMES[message.role] || message.role;
      const body = document.createElement("div");
      body.className = "md turn-body";
      if (typeof message.html === "string") body.innerHTML = message.html; // sanitised by the server
      else body.textContent = message.content;
      turn.append(who, body);
      return turn;
    });
    el.conversation.replaceChildren(...turns);
  }

  // --- heartbeat ------------------------------------------------------------------------------
  function startHeartbeat() {
    stopHeartbeat();
    heartbeatTimer = window.setInterval(heartbeat, HEARTBEAT_MS);
  }

  function stopHeartbeat() {
    window.clearInterval(heartbeatTimer);
    heartbeatTimer = null;
  }

  async function heartbeat() {
    if (!task) return;
    const taskId = task.id;
    const res = await api("POST", `${API}tasks/${taskId}/heartbeat/`);
    if (!task || task.id !== taskId) return;
    if (res.ok) {
      showLease(res.data.lease_expires_at);
    } else if (res.status === 403 || res.status === 409) {
      stopHeartbeat();
      el.lease.textContent = "Lease lost";
      showError(res.data.detail);
    }
  }

  // --- demonstration --------------------------------------------------------------------------
  let saveTimer = null;
  let dirty = false; // the textarea holds text the server has not saved
  let saving = false;

  const charCount = (text) => Array.from(text).length; // code points, as the server counts

  function setupDemonstration(data) {
    hide(el.rankPanel);
    show(el.demoPanel);
    selectTab("write");
    window.clearTimeout(saveTimer);
    let text = data.draft || "";
    let status = data.draft ? "Draft restored" : "";
    dirty = false;
    // A copy the server never confirmed is newer than the server's: prefer it, and save it.
    const local = store.get(draftKey(data.id));
    if (local && local.synced === false && typeof local.text === "string" && local.text !== text) {
      text = local.text;
      status = "Restored unsaved text from this browser";
      dirty = true;
      scheduleSave();
    }
    el.text.value = text;
    updateCounter();
    setSaveStatus(status);
    el.text.focus({ preventScroll: true });
  }

  function updateCounter() {
    const count = charCount(el.text.value);
    const over = count > MAX_CHARS;
    el.counter.textContent = `${count.toLocaleString()} / ${MAX_CHARS.toLocaleString()} characters`;
    el.counter.classList.toggle("over", over);
    el.overLimit.hidden = !over;
    el.overLimit.textContent = over
      ? `Your answer is ${(count - MAX_CHARS).toLocaleString()} characters over the limit of ${MAX_CHARS.toLocaleString()}. Shorten it before submitting.`
      : "";
    return count;
  }

  function setSaveStatus(message, problem = false) {
    el.saveStatus.textContent = message;
    el.saveStatus.classList.toggle("problem", problem);
  }

  function onDraftInput() {
    if (!task) return;
    dirty = true;
    store.set(draftKey(task.id), { text: el.text.value, synced: false });
    updateCounter();
    setSaveStatus("Unsaved changes…");
    scheduleSave();
  }

  function scheduleSave(delay = AUTOSAVE_DELAY_MS) {
    window.clearTimeout(saveTimer);
    saveTimer = window.setTimeout(saveDraft, delay);
  }

  async function saveDraft({ keepalive = false } = {}) {
    window.clearTimeout(saveTimer);
    if (!task || task.kind !== "demonstration" || !dirty) return;
    if (saving) {
      scheduleSave(); // one save at a time, so an older text never lands after a newer one
      return;
    }
    const taskId = task.id;
    const text = el.text.value;
    dirty = false;
    saving = true;
    setSaveStatus("Saving…");
    const res = await api("PUT", `${API}tasks/${taskId}/draft/`, { text }, { keepalive });
    saving = false;
    if (!task || task.id !== taskId) return;
    if (res.ok) {
      if (el.text.value === text) store.set(draftKey(taskId), { text, synced: true });
      setSaveStatus(dirty ? "Unsaved changes…" : `Saved ${clock(res.data.saved_at)}`);
      if (res.data.lease_expires_at) showLease(res.data.lease_expires_at);
    } else {
      dirty = true;
      setSaveStatus(`Not saved to the server: ${res.data.detail} Your text is kept in this browser.`, true);
      if (res.status === 0) scheduleSave(10000); // offline: try again shortly
    }
  }

  async function selectTab(which) {
    const preview = which === "preview";
    el.tabWrite.setAttribute("aria-selected", String(!preview));
    el.tabPreview.setAttribute("aria-selected", String(preview));
    el.text.hidden = preview;
    el.preview.hidden = !preview;
    if (!preview) return;
    if (!el.text.value.trim()) {
      el.preview.textContent = "Nothing to preview yet.";
      return;
    }
    el.preview.textContent = "Rendering…";
    const res = await api("POST", `${API}markdown/`, { text: el.text.value });
    if (res.ok) el.preview.innerHTML = res.data.html; // sanitised by the server
    else el.preview.textContent = res.data.detail;
  }

  // --- ranking --------------------------------------------------------------------------------
  // The order is a flat list of answer ids, best first; tied[id] puts an answer in the same group
  // as the answer above it. groups() turns that into the API's [[id…], [id…]].
  let order = [];
  let tied = {};
  let ratings = {};
  let flags = {};
  let cards = {};
  let focusedId = null;
  let dragId = null;

  function setupRanking(candidates) {
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
    for (const candidate of candidates) cards[candidate.id] = buildCard(candidate);
    layout();
    focusCard(order[0], { scroll: false });
  }

  function buildCard(candidate) {
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
    controls.append(buildRating(candidate), buildTieButton(candidate), buildFlags(candidate));
    main.append(body, controls);
    card.append(rail, main);

    rail.addEventListener("dragstart", (event) => {
      dragId = candidate.id;
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", candidate.label);
      event.dataTransfer.setDragImage(card, 28, 28);
      card.classList.add("dragging");
    });
    rail.addEventListener("dragend", () => {
      dragId = null;
      card.classList.remove("dragging");
      clearDropMarker();
    });
    card.addEventListener("focusin", () => { focusedId = candidate.id; });
    return card;
  }

  function buildRating(candidate) {
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
      keepCardFocus(button, candidate.id);
      button.addEventListener("click", () => setRating(candidate.id, value));
      group.append(button);
    }
    return group;
  }

  // Clicking a rating or the tie button leaves the focus on the card, so the next key
  // (a digit, t, Enter to submit) still means "this answer".
  function keepCardFocus(button, id) {
    button.addEventListener("mousedown", (event) => {
      event.preventDefault();
      focusCard(id, { scroll: false });
    });
  }

  function buildFlags(candidate) {
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
        const chosen = new Set(flags[candidate.id] || []);
        if (input.checked) chosen.add(flag.name);
        else chosen.delete(flag.name);
        flags[candidate.id] = [...chosen];
        label.classList.toggle("checked", input.checked);
      });
      label.append(input, ` ${flag.label}`);
      box.append(label);
    }
    return box;
  }

  function buildTieButton(candidate) {
    const button = document.createElement("button");
    button.type = "button";
    button.tabIndex = -1;
    button.className = "tie-button";
    button.textContent = "Tie with above";
    button.title = "Same quality as the answer above (t)";
    keepCardFocus(button, candidate.id);
    button.addEventListener("click", () => toggleTie(candidate.id));
    return button;
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

  function focusedCardId() {
    const card = document.activeElement && document.activeElement.closest && document.activeElement.closest(".answer-card");
    return card ? card.dataset.id : focusedId;
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

  function moveBy(id, delta) {
    const target = order.indexOf(id) + delta;
    if (target < 0 || target >= order.length) return;
    moveTo(id, target);
  }

  function toggleTie(id) {
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

  function setRating(id, value) {
    ratings[id] = ratings[id] === value ? undefined : value;
    if (ratings[id] === undefined) delete ratings[id];
    for (const button of cards[id].querySelectorAll(".rating-button")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.value) === ratings[id]));
    }
    layout();
    announce(ratings[id] ? `Answer ${cards[id].dataset.label} rated ${value}.` : "Rating removed.");
  }

  // Drag and drop: the drop position is the gap between the cards nearest the pointer.
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

  function flagsPayload() {
    const result = {};
    for (const [id, names] of Object.entries(flags)) if (names.length) result[id] = names;
    return result;
  }

  // --- submit and skip ------------------------------------------------------------------------
  async function submit() {
    if (!task || busy) return;
    clearError();
    if (task.kind === "demonstration") await submitDemonstration();
    else await submitRanking();
  }

  async function submitDemonstration() {
    const text = el.text.value;
    if (!text.trim()) {
      showError("The answer is empty. Write the ideal answer before submitting.");
      return;
    }
    if (updateCounter() > MAX_CHARS) {
      showError(el.overLimit.textContent);
      return;
    }
    window.clearTimeout(saveTimer);
    await send(`tasks/${task.id}/demonstration/`, { text, client_id: clientIdFor(task.id) });
  }

  async function submitRanking() {
    await send(`tasks/${task.id}/ranking/`, {
      ranking: groups(),
      ratings: { ...ratings },
      flags: flagsPayload(),
      none_acceptable: el.none.checked,
      client_id: clientIdFor(task.id),
    });
  }

  async function send(path, body) {
    const taskId = task.id;
    setBusy(true);
    el.submitStatus.textContent = "Submitting…";
    const res = await api("POST", API + path, body);
    setBusy(false);
    el.submitStatus.textContent = "";
    if (!res.ok) {
      showError(res.data.detail); // the text and the ranking stay as they are
      return;
    }
    finishTask(taskId, `Task #${taskId} submitted at ${clock()}.`);
  }

  function finishTask(taskId, message) {
    forgetTask(taskId);
    dirty = false;
    window.clearTimeout(saveTimer);
    announce(message);
    el.lastAction.textContent = message;
    refreshProgress();
    loadNext();
  }

  function openSkip() {
    if (!task || busy) return;
    const hasDraft = task.kind === "demonstration" && el.text.value.trim() !== "";
    el.skipWarning.hidden = !hasDraft;
    el.skipConfirm.textContent = hasDraft ? "Skip anyway" : "Skip task";
    el.skipReason.value = "";
    el.skipDialog.showModal();
    el.skipReason.focus();
  }

  async function skip() {
    if (!task || busy) return;
    const taskId = task.id;
    setBusy(true);
    el.skipConfirm.disabled = true;
    const res = await api("POST", `${API}tasks/${taskId}/skip/`, { reason: el.skipReason.value });
    setBusy(false);
    el.skipConfirm.disabled = false;
    el.skipDialog.close();
    if (!res.ok) {
      showError(res.data.detail);
      return;
    }
    finishTask(taskId, `Task #${taskId} skipped.`);
  }

  // --- keyboard -------------------------------------------------------------------------------
  function isTyping(target) {
    if (!target || !target.closest) return false;
    if (target.closest("textarea, select, [contenteditable=''], [contenteditable='true']")) return true;
    return target.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(target.type);
  }

  function onKeyDown(event) {
    if (document.querySelector("dialog[open]")) return; // the open dialog has the keyboard; Esc closes it
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
      return;
    }
    if (event.isComposing || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    if (event.key === "?") {
      event.preventDefault();
      el.help.showModal();
      return;
    }
    if (!task || busy) return;
    if (event.key === "Enter") {
      if (event.target.closest("button, a, summary, input, [role='tab']")) return; // let them do their own thing
      event.preventDefault();
      submit();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      openSkip();
    } else if (task.kind === "ranking" && rankingKey(event)) {
      event.preventDefault();
    }
  }

  // Returns whether the key was a ranking shortcut.
  function rankingKey(event) {
    const key = event.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    const id = focusedCardId();
    if (key === "ArrowUp" || key === "ArrowDown") {
      const delta = key === "ArrowUp" ? -1 : 1;
      if (event.shiftKey) {
        if (id) moveBy(id, delta);
      } else {
        const index = id ? order.indexOf(id) + delta : 0;
        focusCard(order[Math.max(0, Math.min(order.length - 1, index))]);
      }
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
      el.none.checked = !el.none.checked;
      announce(el.none.checked ? "Marked: none of these answers is acceptable." : "Unmarked: none acceptable.");
      return true;
    }
    if (RATINGS.includes(Number(key))) {
      if (id) setRating(id, Number(key));
      else announce("Focus an answer first: press its letter.");
      return true;
    }
    if (/^[a-z]$/.test(lower)) {
      const target = order.find((cid) => cards[cid].dataset.label === lower.toUpperCase());
      if (target) focusCard(target);
      return Boolean(target);
    }
    return false;
  }

  // --- wiring ---------------------------------------------------------------------------------
  document.addEventListener("keydown", onKeyDown);
  el.submit.addEventListener("click", submit);
  el.skipOpen.addEventListener("click", openSkip);
  el.skipForm.addEventListener("submit", (event) => {
    event.preventDefault();
    skip();
  });
  el.skipCancel.addEventListener("click", () => el.skipDialog.close());
  el.helpOpen.addEventListener("click", () => el.help.showModal());
  el.noticeRetry.addEventListener("click", loadNext);
  el.tabWrite.addEventListener("click", () => selectTab("write").then(() => el.text.focus()));
  el.tabPreview.addEventListener("click", () => selectTab("preview"));
  el.text.addEventListener("input", onDraftInput);
  el.text.addEventListener("blur", () => saveDraft());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") saveDraft({ keepalive: true });
  });
  window.addEventListener("pagehide", () => saveDraft({ keepalive: true }));

  if (el.guidelines) {
    const closedKey = `yushan:guidelines-closed:${PROJECT}`;
    if (store.get(closedKey)) el.guidelines.open = false;
    el.guidelines.addEventListener("toggle", () => store.set(closedKey, !el.guidelines.open));
  }

  refreshProgress();
  loadNext();
})();
