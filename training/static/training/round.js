// The round page: polls the round's API (data-api on #round, /api/v1/rounds/ID/) while the round
// is live and redraws stages, curves, evaluation and logs. All text from the server goes in
// through textContent.
import { api, formatNumber } from "../labeling/common.js";

const root = document.getElementById("round");
const url = root ? root.dataset.api : "";
const ACTIVE = new Set(["queued", "running"]);
// Each curve's vertical axis: what it measures, with its unit. The horizontal axis is the step.
const CURVES = {
  loss: gettext("loss (nats)"),
  eval_loss: gettext("held-out loss (nats)"),
  train_accuracy: gettext("training accuracy (share of pairs)"),
  eval_accuracy: gettext("held-out accuracy (share of pairs)"),
  reward: gettext("mean reward (reward model score)"),
  kl: gettext("KL to the SFT model (nats per answer)"),
  mean_length: gettext("mean answer length (tokens)"),
  reward_margin: gettext("implicit reward margin (chosen minus rejected)"),
  margin: gettext("reward margin (chosen minus rejected)"),
  accuracy: gettext("preference accuracy (share of pairs)"),
};
const STAGES = {
  snapshot: gettext("Snapshot"),
  sft: gettext("SFT"),
  reward: gettext("Reward model"),
  policy: gettext("Policy"),
  evaluate: gettext("Evaluation"),
  deploy: gettext("Deploy"),
};
// Round and stage statuses as the page names them.
const STATUSES = {
  pending: gettext("pending"),
  queued: gettext("queued"),
  running: gettext("running"),
  awaiting_decision: gettext("awaiting an admin's decision"),
  waiting: gettext("waiting for a decision"),
  succeeded: gettext("succeeded"),
  skipped: gettext("skipped"),
  failed: gettext("failed"),
  cancelled: gettext("cancelled"),
};
const statusName = (status) => STATUSES[status] || status.replaceAll("_", " ");
// The stage table's latest numbers, by name.
const METRICS = {
  loss: gettext("loss"),
  eval_loss: gettext("held-out loss"),
  train_accuracy: gettext("training accuracy"),
  eval_accuracy: gettext("held-out accuracy"),
  reward: gettext("mean reward"),
  kl: gettext("KL (nats per answer)"),
  mean_length: gettext("answer length (tokens)"),
  reward_margin: gettext("reward margin"),
  accuracy: gettext("accuracy"),
  epoch: gettext("epoch"),
  steps: gettext("steps"),
  seconds: gettext("seconds"),
  win_rate: gettext("win rate"),
  win_rate_low: gettext("win rate, interval's lower end"),
  threshold: gettext("threshold"),
  sft_rows: gettext("SFT rows"),
  ranking_rows: gettext("ranking rows"),
  consensus_rows: gettext("consensus rows"),
  train_loss_first: gettext("first training loss"),
  train_loss_last: gettext("last training loss"),
};
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
  if (s < 60) return interpolate(gettext("%(s)s s"), { s: Math.round(s) }, true);
  if (s < 3600) return interpolate(gettext("%(min)s min %(s)s s"), { min: Math.floor(s / 60), s: Math.round(s % 60) }, true);
  return interpolate(gettext("%(h)s h %(min)s min"), { h: Math.floor(s / 3600), min: Math.round((s % 3600) / 60) }, true);
}

// Whole numbers as they are ("18", not "18.000"); others to 3 significant digits.
function number(v) {
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) || Math.abs(v) >= 1000) return formatNumber(Math.round(v));
  if (Math.abs(v) < 0.001) return v.toExponential(2);
  return formatNumber(v, { maximumSignificantDigits: 3, minimumSignificantDigits: 3 });
}

function stagesTable(stages) {
  const body = $("#stages tbody");
  body.replaceChildren();
  for (const stage of stages) {
    const row = el("tr");
    row.dataset.stage = stage.name;
    row.append(el("th", STAGES[stage.name] || stage.name));
    const attempt = stage.attempts > 1 ? " " + interpolate(gettext("(attempt %(n)s)"), { n: stage.attempts }, true) : "";
    row.append(el("td", statusName(stage.status) + attempt));
    const cell = el("td");
    const bar = el("progress");
    bar.max = stage.total || 1;
    bar.value = stage.status === "succeeded" ? bar.max : stage.step;
    cell.append(bar, el("span", stage.total ? ` ${formatNumber(stage.step)} / ${formatNumber(stage.total)}` : ""));
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
      .map(([k, v]) => `${METRICS[k] || k.replaceAll("_", " ")}: ${number(v)}`)
      .join(" · ");
    const last = el("td", stage.error || latest, stage.error ? "error" : "small");
    row.append(last);
    body.append(row);
  }
}

// About `count` round numbers from lo to hi (1, 2, 2.5 or 5 times a power of ten apart).
function ticks(lo, hi, count, whole) {
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const steps = whole ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  let step = steps.map((m) => m * power).find((s) => s >= raw) || raw;
  if (whole) step = Math.max(1, Math.round(step));
  const first = Math.ceil(lo / step) * step;
  const values = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) values.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return values;
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A tick's number: as short as it can be ("0.65", not "0.650").
function tickLabel(v) {
  return String(Number(v.toPrecision(6)));
}

// A line chart with both axes: ticks and numbers on each, "step" below, the unit above.
function chart(title, axis, points) {
  const width = 360, height = 220;
  const left = 46, right = 12, top = 24, bottom = 40;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const margin = (y1 - y0) * 0.05;
  y0 -= margin; y1 += margin;
  const sx = (x) => left + ((x - x0) / Math.max(1, x1 - x0)) * (width - left - right);
  const sy = (y) => height - bottom - ((y - y0) / (y1 - y0)) * (height - top - bottom);
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: ${axis}` });
  for (const y of ticks(y0, y1, 4, false)) {
    svg.append(svgNode("line", { x1: left, x2: width - right, y1: sy(y).toFixed(1), y2: sy(y).toFixed(1), class: "grid" }));
    svg.append(svgNode("text", { x: left - 6, y: (sy(y) + 3).toFixed(1), "text-anchor": "end", class: "tick-label" }, tickLabel(y)));
  }
  for (const x of ticks(x0, x1, 5, true)) {
    svg.append(svgNode("line", { x1: sx(x).toFixed(1), x2: sx(x).toFixed(1), y1: height - bottom, y2: height - bottom + 4, class: "axis" }));
    svg.append(svgNode("text", { x: sx(x).toFixed(1), y: height - bottom + 15, "text-anchor": "middle", class: "tick-label" }, tickLabel(x)));
  }
  svg.append(svgNode("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }));
  svg.append(svgNode("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }));
  svg.append(svgNode("text", { x: (left + width - right) / 2, y: height - 8, "text-anchor": "middle", class: "axis-title" }, gettext("step")));
  svg.append(svgNode("text", { x: 2, y: top - 10, "text-anchor": "start", class: "axis-title" }, axis));
  svg.append(svgNode("polyline", {
    points: points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "),
    fill: "none",
    stroke: "currentColor",
    "stroke-width": 2,
  }));
  const figure = el("figure", null, "card curve");
  const caption = el("figcaption", null, "small");
  caption.append(el("strong", title));
  const last = points[points.length - 1];
  figure.append(caption, svg, el("p", interpolate(gettext("Step %(step)s: %(value)s"), { step: number(last[0]), value: number(last[1]) }, true), "muted small"));
  return figure;
}

function curves(data) {
  const box = $("#curves");
  box.replaceChildren();
  for (const [stage, points] of Object.entries(data || {})) {
    for (const [key, axis] of Object.entries(CURVES)) {
      const series = points.filter((p) => typeof p[key] === "number").map((p) => [p.step, p[key]]);
      if (series.length >= 2) box.append(chart(STAGES[stage] || stage, axis, series));
    }
  }
  if (!box.children.length) box.append(el("p", gettext("Curves appear after the first training steps."), "empty"));
}

function evaluation(result) {
  const box = $("#evaluation");
  if (!result || result.win_rate === undefined) return;
  box.replaceChildren();
  const table = el("table", null, "data-table");
  const head = el("tr");
  for (const h of ["", gettext("new policy"), gettext("deployed policy")]) head.append(el("th", h));
  table.append(head);
  const rows = [
    [gettext("mean reward (new reward model)"), result.new_mean_reward, result.old_mean_reward],
    [gettext("mean answer length (tokens)"), result.new_mean_length, result.old_mean_length],
    [gettext("win rate of new over deployed"), result.win_rate, ""],
    [gettext("95% interval of the win rate"), result.win_rate_ci ? `${number(result.win_rate_ci[0])} – ${number(result.win_rate_ci[1])}` : undefined, ""],
    [gettext("KL(new ‖ deployed), nats per answer"), result.kl, ""],
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
    frozen: gettext("On the project's frozen evaluation split: prompts no round trains on, the same for every round."),
    unseen: gettext("On prompts this round did not train on (the project has no frozen evaluation split)."),
    all: gettext("Too few unseen prompts: evaluated on a fixed sample of all prompts."),
  };
  box.append(el("p", SPLITS[result.evaluation_split || (result.held_out_prompts ? "unseen" : "all")], "muted small"));
  for (const sample of (result.rows || []).slice(0, 8)) {
    const item = el("details");
    const prompt = sample.prompt && sample.prompt.length ? sample.prompt[sample.prompt.length - 1].content : "";
    const rewards = interpolate(gettext("new %(new)s vs deployed %(old)s"), { new: number(sample.new_reward), old: number(sample.old_reward) }, true);
    item.append(el("summary", `${prompt.slice(0, 120)} — ${rewards}`));
    item.append(el("h4", gettext("New policy")), el("p", sample.new_answer, "md"));
    item.append(el("h4", gettext("Deployed policy")), el("p", sample.old_answer, "md"));
    box.append(item);
  }
}

const JUDGE_NAMES = { new_reward_model: gettext("this round's reward model"), previous_reward_model: gettext("the previous round's reward model") };
const VERDICTS = { better: gettext("better"), worse: gettext("worse"), "no clear difference": gettext("no clear difference") };

function judges(result) {
  const box = el("div");
  const names = Object.keys(result.judges || {});
  if (!names.length) return box;
  const list = el("ul");
  for (const name of names) {
    const judge = result.judges[name];
    const ci = judge.win_rate_ci || [];
    const text = gettext("%(judge)s: win rate %(rate)s (95% interval %(low)s – %(high)s), %(verdict)s");
    const values = { judge: JUDGE_NAMES[name] || name, rate: number(judge.win_rate), low: number(ci[0]), high: number(ci[1]), verdict: VERDICTS[judge.verdict] || judge.verdict };
    list.append(el("li", interpolate(text, values, true)));
  }
  const decider = JUDGE_NAMES[result.decided_by] || result.decided_by;
  box.append(el("p", interpolate(gettext("Judges (%(judge)s decides, on the interval's lower bound):"), { judge: decider }, true), "small"), list);
  const blocks = result.disagreement_blocks_deploy ?? result.judges_disagree;
  if (result.judges_disagree && blocks) box.append(el("p", gettext("The judges disagree: nothing deploys by itself; an admin decides."), "notice"));
  else if (result.judges_disagree) {
    const outranked = (result.judges_outranked || []).map((name) => JUDGE_NAMES[name] || name).join(gettext(" and "));
    const compared = result.reward_models_compared || {};
    const ci = compared.difference_ci || [];
    const text = gettext("The judges disagree, but %(judges)s orders the held-out human rankings clearly worse (accuracy of this round's reward model minus the previous one's: %(difference)s, 95% interval %(low)s – %(high)s), so it does not decide.");
    const values = { judges: outranked, difference: number(compared.difference), low: number(ci[0]), high: number(ci[1]) };
    box.append(el("p", interpolate(text, values, true), "notice"));
  }
  return box;
}

const HELD_OUT = [
  ["reward_model_accuracy", gettext("this round's reward model orders them as people did")],
  ["previous_reward_model_accuracy", gettext("the previous round's reward model")],
  ["implicit_reward_accuracy", gettext("the new policy itself (its log-probability ratio to the SFT model, as DPO reads a policy)")],
];

function heldOut(result) {
  const box = el("div");
  const shown = HELD_OUT.filter(([key]) => result[key] && result[key].pairs);
  if (!shown.length) {
    box.append(el("p", gettext("No held-out human rankings yet: label ranking tasks of the evaluation split to see the reward model's accuracy."), "muted small"));
    return box;
  }
  const list = el("ul");
  for (const [key, label] of shown) {
    const judged = result[key];
    const text = gettext("%(label)s: %(accuracy)s (95% interval %(low)s – %(high)s, %(pairs)s pairs from %(rankings)s rankings)");
    const values = { label, accuracy: number(judged.accuracy), low: number(judged.accuracy_ci[0]), high: number(judged.accuracy_ci[1]), pairs: formatNumber(judged.pairs), rankings: formatNumber(judged.rankings) };
    list.append(el("li", interpolate(text, values, true)));
  }
  box.append(el("p", gettext("Accuracy on the frozen split's human rankings (0.5 is chance; between people, agreement is 63–77%):"), "small"), list);
  return box;
}

function models(data) {
  const list = $("#models");
  list.replaceChildren();
  const rows = [[gettext("base (deployed at start)"), "base_policy"], [gettext("SFT"), "sft_version"], [gettext("reward model"), "reward_version"], [gettext("new policy"), "policy_version"]];
  for (const [label, key] of rows) {
    const v = data[key];
    list.append(el("li", `${label}: ${v ? `${v.name} (v${v.id})` : "—"}`));
  }
}

function buttons(data) {
  const active = ACTIVE.has(data.status) || data.status === "awaiting_decision";
  $("#cancel-round").hidden = !active || data.cancel_requested;
  $("#retry-round").hidden = !["failed", "cancelled"].includes(data.status);
  $("#deploy-round").hidden = $("#keep-round").hidden = data.status !== "awaiting_decision";
  // The deploy button opens the confirmation, which shows this evaluation again with the threshold.
  if (data.policy_version) $("#deploy-round").textContent = interpolate(gettext("Deploy v%(version)s"), { version: data.policy_version.id }, true);
  const status = $("#round-status");
  status.textContent = statusName(data.status) + (data.cancel_requested && active ? " " + gettext("(cancelling)") : "") + (data.deployed ? " · " + gettext("deployed") : "");
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
  $("#cancel-round").addEventListener("click", () => act("cancel/", undefined, gettext("Cancelling at the next step…")));
  $("#retry-round").addEventListener("click", () => act("retry/", undefined, gettext("Retrying…")));
  $("#keep-round").addEventListener("click", () => act("decision/", { deploy: false }, gettext("Keeping the current policy…")));
  refresh();
}
