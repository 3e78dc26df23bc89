// The round page: polls the round's API (data-api on #round, /api/v1/rounds/ID/) while the round
// is live and redraws stages, curves, evaluation and logs. All text from the server goes in
// through textContent.
import { api } from "../labeling/common.js";

const root = document.getElementById("round");
const url = root ? root.dataset.api : "";
const ACTIVE = new Set(["queued", "running"]);
const CURVE_KEYS = ["loss", "eval_loss", "train_accuracy", "eval_accuracy", "reward", "kl", "mean_length", "margin", "accuracy"];
const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function seconds(a, b) {
  if (!a) return null;
  return ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
}

function duration(s) {
  if (s === null || !isFinite(s)) return "";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function number(v) {
  return typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)) : String(v);
}

function stagesTable(stages) {
  const body = $("#stages tbody");
  body.replaceChildren();
  for (const stage of stages) {
    const row = el("tr");
    row.dataset.stage = stage.name;
    row.append(el("th", stage.name));
    row.append(el("td", stage.status + (stage.attempts > 1 ? ` (attempt ${stage.attempts})` : "")));
    const cell = el("td");
    const bar = el("progress");
    bar.max = stage.total || 1;
    bar.value = stage.status === "succeeded" ? bar.max : stage.step;
    cell.append(bar, el("span", stage.total ? ` ${stage.step} / ${stage.total}` : ""));
    row.append(cell);
    const elapsed = seconds(stage.started_at, stage.finished_at);
    row.append(el("td", duration(elapsed)));
    let remaining = "";
    if (stage.status === "running" && stage.step > 0 && stage.total > stage.step) {
      remaining = duration((elapsed / stage.step) * (stage.total - stage.step));
    }
    row.append(el("td", remaining));
    const latest = Object.entries(stage.metrics || {})
      .filter(([, v]) => typeof v === "number")
      .slice(0, 6)
      .map(([k, v]) => `${k} ${number(v)}`)
      .join(" · ");
    const last = el("td", stage.error || latest, stage.error ? "error" : "small");
    row.append(last);
    body.append(row);
  }
}

function chart(title, points) {
  const width = 320, height = 140, pad = 28;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => pad + ((x - x0) / Math.max(1, x1 - x0)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0)) * (height - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  for (const [y, label] of [[y1, number(y1)], [y0, number(y0)]]) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "2");
    text.setAttribute("y", String(sy(y) + 4));
    text.setAttribute("font-size", "10");
    text.textContent = label;
    svg.append(text);
  }
  const figure = el("figure", null, "card");
  figure.append(el("figcaption", `${title} (last ${number(ys[ys.length - 1])})`, "small"), svg);
  return figure;
}

function curves(data) {
  const box = $("#curves");
  box.replaceChildren();
  for (const [stage, points] of Object.entries(data || {})) {
    for (const key of CURVE_KEYS) {
      const series = points.filter((p) => typeof p[key] === "number").map((p) => [p.step, p[key]]);
      if (series.length >= 2) box.append(chart(`${stage} · ${key}`, series));
    }
  }
  if (!box.children.length) box.append(el("p", "Curves appear after the first training steps.", "empty"));
}

function evaluation(result) {
  const box = $("#evaluation");
  if (!result || result.win_rate === undefined) return;
  box.replaceChildren();
  const table = el("table", null, "data-table");
  const head = el("tr");
  for (const h of ["", "new policy", "deployed policy"]) head.append(el("th", h));
  table.append(head);
  const rows = [
    ["mean reward (new reward model)", result.new_mean_reward, result.old_mean_reward],
    ["mean answer length (tokens)", result.new_mean_length, result.old_mean_length],
    ["win rate of new over deployed", result.win_rate, ""],
    ["95% interval of the win rate", result.win_rate_ci ? `${number(result.win_rate_ci[0])} – ${number(result.win_rate_ci[1])}` : undefined, ""],
    ["KL(new ‖ deployed), nats per answer", result.kl, ""],
  ];
  for (const r of rows) {
    const tr = el("tr");
    const shown = (value) => (value === "" || value === undefined ? "" : typeof value === "string" ? value : number(value));
    tr.append(el("th", r[0]), el("td", shown(r[1])), el("td", shown(r[2])));
    table.append(tr);
  }
  box.append(table);
  box.append(judges(result));
  box.append(heldOut(result));
  const SPLITS = {
    frozen: "On the project's frozen evaluation split: prompts no round trains on, the same for every round.",
    unseen: "On prompts this round did not train on (the project has no frozen evaluation split).",
    all: "Too few unseen prompts: evaluated on a fixed sample of all prompts.",
  };
  box.append(el("p", SPLITS[result.evaluation_split || (result.held_out_prompts ? "unseen" : "all")], "muted small"));
  for (const sample of (result.rows || []).slice(0, 8)) {
    const item = el("details");
    const prompt = sample.prompt && sample.prompt.length ? sample.prompt[sample.prompt.length - 1].content : "";
    item.append(el("summary", `${prompt.slice(0, 120)} — new ${number(sample.new_reward)} vs deployed ${number(sample.old_reward)}`));
    item.append(el("h4", "New policy"), el("p", sample.new_answer, "md"));
    item.append(el("h4", "Deployed policy"), el("p", sample.old_answer, "md"));
    box.append(item);
  }
}

const JUDGE_NAMES = { new_reward_model: "this round's reward model", previous_reward_model: "the previous round's reward model" };

function judges(result) {
  const box = el("div");
  const names = Object.keys(result.judges || {});
  if (!names.length) return box;
  const list = el("ul");
  for (const name of names) {
    const judge = result.judges[name];
    const ci = judge.win_rate_ci || [];
    list.append(el("li", `${JUDGE_NAMES[name] || name}: win rate ${number(judge.win_rate)} (95% interval ${number(ci[0])} – ${number(ci[1])}), ${judge.verdict}`));
  }
  box.append(el("p", `Judges (${JUDGE_NAMES[result.decided_by] || result.decided_by} decides, on the interval's lower bound):`, "small"), list);
  const blocks = result.disagreement_blocks_deploy ?? result.judges_disagree;
  if (result.judges_disagree && blocks) box.append(el("p", "The judges disagree: nothing deploys by itself; an admin decides.", "notice"));
  else if (result.judges_disagree) {
    const outranked = (result.judges_outranked || []).map((name) => JUDGE_NAMES[name] || name).join(" and ");
    const compared = result.reward_models_compared || {};
    const ci = compared.difference_ci || [];
    box.append(el("p", `The judges disagree, but ${outranked} orders the held-out human rankings clearly worse (accuracy of this round's reward model minus the previous one's: ${number(compared.difference)}, 95% interval ${number(ci[0])} – ${number(ci[1])}), so it does not decide.`, "notice"));
  }
  return box;
}

const HELD_OUT = [
  ["reward_model_accuracy", "this round's reward model orders them as people did"],
  ["previous_reward_model_accuracy", "the previous round's reward model"],
  ["implicit_reward_accuracy", "the new policy itself (its log-probability ratio to the SFT model, as DPO reads a policy)"],
];

function heldOut(result) {
  const box = el("div");
  const shown = HELD_OUT.filter(([key]) => result[key] && result[key].pairs);
  if (!shown.length) {
    box.append(el("p", "No held-out human rankings yet: label ranking tasks of the evaluation split to see the reward model's accuracy.", "muted small"));
    return box;
  }
  const list = el("ul");
  for (const [key, label] of shown) {
    const judged = result[key];
    list.append(el("li", `${label}: ${number(judged.accuracy)} (95% interval ${number(judged.accuracy_ci[0])} – ${number(judged.accuracy_ci[1])}, ${judged.pairs} pairs from ${judged.rankings} rankings)`));
  }
  box.append(el("p", "Accuracy on the frozen split's human rankings (0.5 is chance; people agree with each other 63–77% of the time):", "small"), list);
  return box;
}

function models(data) {
  const list = $("#models");
  list.replaceChildren();
  for (const [label, key] of [["base (deployed at start)", "base_policy"], ["SFT", "sft_version"], ["reward model", "reward_version"], ["new policy", "policy_version"]]) {
    const v = data[key];
    list.append(el("li", `${label}: ${v ? `${v.name} (v${v.id})` : "—"}`));
  }
}

function buttons(data) {
  const active = ACTIVE.has(data.status) || data.status === "awaiting_decision";
  $("#cancel-round").hidden = !active || data.cancel_requested;
  $("#retry-round").hidden = !["failed", "cancelled"].includes(data.status);
  $("#deploy-round").hidden = $("#keep-round").hidden = data.status !== "awaiting_decision";
  const status = $("#round-status");
  status.textContent = data.status.replace("_", " ") + (data.cancel_requested && active ? " (cancelling)" : "") + (data.deployed ? " · deployed" : "");
  const waiting = $("#round-waiting");
  waiting.hidden = !data.waiting_for;
  waiting.textContent = data.waiting_for || "";
  const error = $("#round-error");
  error.hidden = !data.error;
  error.textContent = data.error || "";
}

let timer = null;
async function refresh() {
  const { ok, data } = await api("GET", url);
  if (!ok) {
    $("#action-status").textContent = data.detail;
    return;
  }
  buttons(data);
  stagesTable(data.stages);
  curves(data.curves);
  evaluation(data.evaluation);
  models(data);
  $("#log").textContent = data.stages.filter((s) => s.log).map((s) => `[${s.name}]\n${s.log}`).join("\n");
  clearTimeout(timer);
  if (ACTIVE.has(data.status)) timer = setTimeout(refresh, 2000);
}

async function act(path, body, message) {
  $("#action-status").textContent = message;
  const { ok, data } = await api("POST", url + path, body);
  $("#action-status").textContent = ok ? "" : data.detail;
  refresh();
}

if (root) {
  $("#cancel-round").addEventListener("click", () => act("cancel/", undefined, "Cancelling at the next step…"));
  $("#retry-round").addEventListener("click", () => act("retry/", undefined, "Retrying…"));
  $("#deploy-round").addEventListener("click", () => act("decision/", { deploy: true }, "Deploying…"));
  $("#keep-round").addEventListener("click", () => act("decision/", { deploy: false }, "Keeping the current policy…"));
  refresh();
}
