// @ts-check
// Following one sync task until it ends.
//
// The contract of the "Sync now" button rests here:
//   - progress comes from the task's EventSource (snapshot, progress, then one terminal event);
//   - on the terminal event the stream is closed at once (an EventSource left open would
//     reconnect by itself) and nothing further is requested;
//   - if the stream fails, the task is polled with a growing delay, and the stream is tried again
//     after each successful poll; polling stops at a terminal state;
//   - a task whose worker died is never waited on: its stream reaps it and goes on with its next
//     attempt (a new run, whose counters start again from zero), or ends with a "replaced" event
//     carrying the task that replaced it, which is followed from then on;
//   - stop() ends everything (leaving the page, following another task).

import {errorStatus, get} from './api.js';

/** @typedef {import('./api.js').Task} Task */
/** @typedef {import('./api.js').TaskState} TaskState */
/** @typedef {Task & {state: 'queued' | 'running'}} ActiveTask */

/** @type {readonly TaskState[]} */
export const TERMINAL_STATES = ['succeeded', 'failed', 'cancelled'];

/**
 * @param {Task | null | undefined} task
 * @returns {task is ActiveTask}
 */
export function isActive(task) {
  return !!task && (task.state === 'queued' || task.state === 'running');
}

/**
 * isStalled: the task claims to be active but nobody has been heard from within the timeout (its
 * worker died). The server replaces it on the next start, so the page offers one.
 * @param {Task | null | undefined} task
 * @returns {boolean}
 */
export function isStalled(task) {
  return isActive(task) && task.live === false;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;

export class TaskFollower {
  /**
   * onUpdate(task) is called with every new view of the task, the last one terminal.
   * @param {(task: Task) => void} onUpdate
   */
  constructor(onUpdate) {
    this.onUpdate = onUpdate;
    /** @type {Task | null} */
    this.task = null;
    /** @type {EventSource | null} */
    this.source = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.retryMs = FIRST_RETRY_MS;
    this.stopped = true;
    // generation changes whenever what is followed changes (stop, follow, replace), so a poll
    // whose answer arrives after that knows it is about something no longer followed.
    this.generation = 0;
  }

  /**
   * follow starts following task (a view from the API), leaving any previous one.
   * @param {Task} task
   */
  follow(task) {
    this.stop();
    this.stopped = false;
    this.task = task;
    this.retryMs = FIRST_RETRY_MS;
    if (isActive(task)) this.open();
    else this.stopped = true;
  }

  get following() {
    return !this.stopped;
  }

  stop() {
    this.stopped = true;
    this.generation++;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  open() {
    if (!this.task) return; // follow sets it before anything opens
    const id = this.task.id;
    const es = new EventSource(`/api/sync/tasks/${encodeURIComponent(id)}/events`);
    this.source = es;
    /** @param {MessageEvent<string>} ev */
    const onTask = (ev) => {
      if (this.source !== es) return;
      let task;
      try { task = JSON.parse(ev.data); } catch { return; }
      this.retryMs = FIRST_RETRY_MS; // the stream works
      this.update(task);
    };
    es.addEventListener('snapshot', onTask);
    es.addEventListener('progress', onTask);
    es.addEventListener('replaced', (ev) => {
      es.close(); // this task's stream is over; the replacement has its own
      if (this.source !== es) return;
      this.source = null;
      let next;
      try { next = JSON.parse(ev.data); } catch { return; }
      this.replace(next);
    });
    for (const name of TERMINAL_STATES) {
      es.addEventListener(name, (ev) => {
        es.close(); // before anything else: no reconnect, no further request
        onTask(ev);
      });
    }
    es.onerror = () => {
      if (this.source !== es) return;
      // The stream broke (server restart, proxy, network). An EventSource would retry on its own,
      // forever; poll instead, which ends at a terminal state whatever happens to streams.
      es.close();
      this.source = null;
      this.schedulePoll();
    };
  }

  /**
   * replace switches to the task that replaced the followed one (same account, new id).
   * @param {Task | null} next
   */
  replace(next) {
    if (this.stopped || !next || !next.id) return;
    this.generation++;
    this.task = next;
    this.retryMs = FIRST_RETRY_MS;
    if (!isActive(next)) this.stop();
    this.onUpdate(next);
    if (!this.stopped) this.open();
  }

  /** @param {Task | null} task */
  update(task) {
    const current = this.task;
    if (this.stopped || !task || !current || task.id !== current.id) return;
    const shown = current.progress;
    if (isActive(task) && shown && task.progress && task.progress.messages_done < shown.messages_done) {
      // The server never lowers a run's counters, but a new run of the same task (its worker died
      // and another took it over) counts from zero again. A bar must not move backwards: keep the
      // counters shown until the new run passes them, take the rest (state, liveness, phase).
      task = {...task, progress: shown, percent: Math.max(task.percent, current.percent || 0)};
    }
    this.task = task;
    if (!isActive(task)) this.stop();
    this.onUpdate(task);
  }

  schedulePoll() {
    if (this.stopped) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.timer = setTimeout(() => this.poll(), delay);
  }

  async poll() {
    this.timer = null;
    if (this.stopped || !this.task) return;
    const generation = this.generation;
    /** @type {Task} */
    let task;
    try {
      task = await get(`/api/sync/tasks/${encodeURIComponent(this.task.id)}`);
    } catch (err) {
      if (generation !== this.generation) return; // followed something else meanwhile
      if (errorStatus(err) === 404) { // the account was deleted, its tasks with it
        this.stop();
        return;
      }
      this.schedulePoll();
      return;
    }
    // The answer is about what was followed when the poll began: if follow, replace or stop came
    // since, its stream is open already (or must stay closed), and opening one here would leave two.
    if (generation !== this.generation) return;
    this.update(task);
    if (this.stopped) return;
    this.open(); // the server answers again: try the stream once more
  }
}
