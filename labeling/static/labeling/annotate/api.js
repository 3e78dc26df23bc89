// The annotator's API client: one function per endpoint of /api/v1/ this page calls. The fetch
// wrapper underneath (session cookie, CSRF header, errors as data.detail, never a throw) is
// common.js's api(); every function here resolves to its {ok, status, data}.
import { api } from "../common.js";
import { API, PROJECT } from "./page.js";

export const progress = () => api("GET", `${API}me/progress/?project=${PROJECT}`);

export const nextTask = () => api("GET", `${API}tasks/next/?project=${PROJECT}&render=html`);

export const heartbeat = (taskId) => api("POST", `${API}tasks/${taskId}/heartbeat/`);

export const saveDraft = (taskId, text, { keepalive = false } = {}) =>
  api("PUT", `${API}tasks/${taskId}/draft/`, { text }, { keepalive });

export const renderMarkdown = (text) => api("POST", `${API}markdown/`, { text });

// kind is "demonstration" or "ranking", as the task says.
export const submit = (taskId, kind, body) => api("POST", `${API}tasks/${taskId}/${kind}/`, body);

export const skip = (taskId, reason) => api("POST", `${API}tasks/${taskId}/skip/`, { reason });
