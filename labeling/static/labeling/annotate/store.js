// Local storage: the fallback copy of drafts, each task's client_id, and small page preferences.
// Every access is guarded: storage can be full or disabled, and the server copy remains.
import { uuid } from "../common.js";

export const store = {
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

export const draftKey = (taskId) => `yushan:draft:${taskId}`;
const clientKey = (taskId) => `yushan:client:${taskId}`;
export const guidelinesClosedKey = (projectId) => `yushan:guidelines-closed:${projectId}`;
const clientIds = {};

// One client_id per task, reused by every retry, so a repeated submit is answered with the
// first one's result instead of creating a second record.
export function clientIdFor(taskId) {
  if (!clientIds[taskId]) clientIds[taskId] = store.get(clientKey(taskId)) || uuid();
  store.set(clientKey(taskId), clientIds[taskId]);
  return clientIds[taskId];
}

export function forgetTask(taskId) {
  store.remove(draftKey(taskId));
  store.remove(clientKey(taskId));
  delete clientIds[taskId];
}
