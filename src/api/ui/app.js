// flotte's page of the live cluster. It reads the cluster once through the API flottectl uses
// (fleet v1, /flotte/v1/leader, /flotte/v1/services), then follows GET /flotte/v1/events and
// changes only what each event says changed: it never polls. An event that does not carry
// everything shown (a unit's current state, a machine's metadata) is followed by one read of
// that unit or of the machine list, never of everything.
//
// No framework and no build step: the page is a few tables and forms, plain DOM calls do it,
// and flotted serves this file as it is.

const EVENTS = '/flotte/v1/events';
const MACHINES = '/fleet/v1/machines';
const UNITS = '/fleet/v1/units';
const STATES = '/fleet/v1/state';
const LEADER = '/flotte/v1/leader';
const FLOTTE_UNITS = '/flotte/v1/units';
const SERVICES = '/flotte/v1/services';
const FEED_SIZE = 200;
const JOURNAL_LINES = 30;

// ---------------------------------------------------------------- the API

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const error = await response.json();
      if (error && error.error && error.error.message) message = error.error.message;
    } catch (_) { /* not JSON: the status says it */ }
    throw new HttpError(response.status, message);
  }
  return response;
}

const getJSON = async (path) => (await request('GET', path)).json();

/** Every item of a fleet listing, following its page tokens. */
async function listAll(path, field) {
  let items = [];
  let token = '';
  for (;;) {
    const page = await getJSON(token ? `${path}?nextPageToken=${encodeURIComponent(token)}` : path);
    items = items.concat(page[field] || []);
    if (!page.nextPageToken) return items;
    token = page.nextPageToken;
  }
}

export const unitPath = (name) => `${UNITS}/${encodeURIComponent(name)}`;
/** flotte's own routes of a unit (status, journal). */
export const flotteUnitPath = (name) => `${FLOTTE_UNITS}/${encodeURIComponent(name)}`;
export const unitPage = (name) => `/ui/units/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- what units mean

const RUNNING = new Set(['active', 'activating', 'deactivating', 'reloading', 'refreshing']);
/** systemd's ActiveState that counts as running, as flottectl's `ActiveState::is_running`. */
export const isRunning = (active) => RUNNING.has(active);

/** `web@1.service` -> `web@.service`; a template is its own; a plain unit has none. */
export function templateOf(name) {
  const m = /^([^@]+)@[^.]*\.([a-z]+)$/.exec(name);
  return m ? `${m[1]}@.${m[2]}` : null;
}
export const isTemplate = (name) => /^[^@]+@\.[a-z]+$/.test(name);

export function option(unit, section, name) {
  const o = (unit.options || []).find((x) => x.section === section && x.name === name);
  return o ? o.value : '';
}

/** One word for where a unit is, from its record and its machines' reports. */
export function statusOf(unit, states) {
  if (isTemplate(unit.name)) return 'template';
  const placed = unit.machineIDs || [];
  if (unit.reason) return 'unplaced';
  if (unit.desiredState === 'inactive') return 'inactive';
  if (placed.length === 0) return 'unplaced';
  const reports = placed.map((m) => states && states.get(m)).filter(Boolean);
  if (reports.some((s) => s.active === 'failed')) return 'failed';
  if (unit.desiredState === 'launched') {
    if (reports.length === placed.length && reports.every((s) => s.active === 'active')) return 'running';
    return 'starting';
  }
  if (reports.some((s) => isRunning(s.active))) return 'stopping';
  return 'stopped';
}
export const STATUSES = ['running', 'starting', 'stopping', 'stopped', 'failed', 'unplaced', 'inactive', 'template'];
const BADGE = { running: 'ok', starting: 'warn', stopping: 'warn', failed: 'bad', unplaced: 'bad' };

/** Whether a unit passes the units page's filters. */
export function matches(unit, states, filter) {
  if (filter.name && !unit.name.toLowerCase().includes(filter.name.toLowerCase())) return false;
  if (filter.state && statusOf(unit, states) !== filter.state) return false;
  if (filter.machine && !(unit.machineIDs || []).includes(filter.machine)) return false;
  return true;
}

/** Units in groups: plain units first, then each template with its instances. */
export function groups(units) {
  const plain = [];
  const byTemplate = new Map();
  for (const u of [...units].sort((a, b) => a.name.localeCompare(b.name))) {
    const t = templateOf(u.name);
    if (t === null) plain.push(u);
    else {
      if (!byTemplate.has(t)) byTemplate.set(t, []);
      byTemplate.get(t).push(u);
    }
  }
  const out = plain.length ? [{ template: null, units: plain }] : [];
  for (const t of [...byTemplate.keys()].sort()) {
    // The template's own row first, then its instances.
    const members = byTemplate.get(t).sort((a, b) => (a.name === t ? -1 : b.name === t ? 1 : a.name.localeCompare(b.name)));
    out.push({ template: t, units: members });
  }
  return out;
}

// ---------------------------------------------------------------- the model and its events

export function newModel() {
  return {
    machines: new Map(), // id -> machine as the API lists it, plus `lost`
    units: new Map(), // name -> unit as the API shows it
    states: new Map(), // unit name -> Map(machine id -> {load, active, sub, message})
    leader: null,
    feed: [], // recent events, newest first
    revision: 0,
  };
}

function statesOf(model, unit) {
  if (!model.states.has(unit)) model.states.set(unit, new Map());
  return model.states.get(unit);
}

/**
 * Applies one event to the model; returns what must be read again because the event does not
 * carry it: `{unit: NAME}` (its current state, description, options) or `{machines: true}`.
 * Applying an event twice changes nothing more, so a resumed stream may repeat some.
 */
export function apply(model, ev) {
  const needs = [];
  const unit = (name, change) => {
    const u = model.units.get(name);
    if (u) change(u);
    needs.push({ unit: name });
  };
  switch (ev.type) {
    case 'submitted':
      if (!model.units.has(ev.unit)) model.units.set(ev.unit, { name: ev.unit, currentState: 'inactive' });
      unit(ev.unit, (u) => { u.desiredState = ev.desired; });
      break;
    case 'desired_state_changed':
      unit(ev.unit, (u) => { u.desiredState = ev.to; });
      break;
    case 'placed':
      unit(ev.unit, (u) => { u.machineIDs = ev.machines; u.machineID = ev.machines[0] || ''; u.reason = ''; });
      break;
    case 'unplaced':
      unit(ev.unit, (u) => { u.machineIDs = []; u.machineID = ''; u.currentState = 'inactive'; });
      break;
    case 'unplaceable':
      unit(ev.unit, (u) => { u.reason = ev.reason; });
      break;
    case 'state_changed':
      statesOf(model, ev.unit).set(ev.machine, { load: ev.load, active: ev.active, sub: ev.sub, message: ev.message || '' });
      unit(ev.unit, () => {});
      break;
    case 'state_removed':
      statesOf(model, ev.unit).delete(ev.machine);
      unit(ev.unit, () => {});
      break;
    case 'destroyed':
      model.units.delete(ev.unit);
      model.states.delete(ev.unit);
      break;
    case 'machine_joined':
      model.machines.set(ev.machine, { ...(model.machines.get(ev.machine) || {}), id: ev.machine, primaryIP: ev.ip, hostname: ev.hostname, lost: false });
      needs.push({ machines: true });
      break;
    case 'machine_changed':
      needs.push({ machines: true });
      break;
    case 'machine_lost': {
      const m = model.machines.get(ev.machine) || { id: ev.machine, hostname: ev.hostname };
      model.machines.set(ev.machine, { ...m, lost: true });
      break;
    }
    case 'leader_changed':
      model.leader = ev.leader || null;
      break;
    default:
      return needs;
  }
  model.revision = Math.max(model.revision, ev.revision);
  remember(model, ev);
  return needs;
}

function remember(model, ev) {
  const key = JSON.stringify(ev);
  if (model.feed.some((e) => e.key === key)) return;
  model.feed.unshift({ key, ev, at: new Date() });
  if (model.feed.length > FEED_SIZE) model.feed.length = FEED_SIZE;
}

// ---------------------------------------------------------------- the live cluster

const model = newModel();
const waiters = new Set();
/** Whether the lists were read: events apply from then on. */
let loaded = false;

/** Reads one thing again, one request at a time; asked again meanwhile, once more after. */
function reader(read) {
  const busy = new Map();
  return (key) => {
    if (busy.has(key)) { busy.set(key, true); return; }
    busy.set(key, false);
    (async () => {
      do {
        busy.set(key, false);
        try { await read(key); } catch (e) { showLive(`reading ${key} failed: ${e.message}`, false); }
      } while (busy.get(key));
      busy.delete(key);
      changed();
    })();
  };
}

const readUnit = reader(async (name) => {
  try {
    const u = await getJSON(unitPath(name));
    if (model.units.has(name)) model.units.set(name, u);
  } catch (e) {
    if (e.status === 404) { model.units.delete(name); model.states.delete(name); } else throw e;
  }
});

const readMachines = reader(async () => setMachines(await listAll(MACHINES, 'machines')));

function setMachines(listed) {
  const seen = new Set(listed.map((m) => m.id));
  for (const [id, m] of model.machines) if (!seen.has(id)) model.machines.set(id, { ...m, lost: true });
  for (const m of listed) model.machines.set(m.id, { ...m, lost: false });
}

async function loadAll() {
  const [machines, units, states, leader] = await Promise.all([
    listAll(MACHINES, 'machines'),
    listAll(UNITS, 'units'),
    listAll(STATES, 'states'),
    getJSON(LEADER),
  ]);
  model.machines.clear();
  setMachines(machines);
  model.units = new Map(units.map((u) => [u.name, u]));
  model.states = new Map();
  for (const s of states) {
    statesOf(model, s.name).set(s.machineID, { load: s.systemdLoadState, active: s.systemdActiveState, sub: s.systemdSubState, message: s.message || '' });
  }
  model.leader = leader.leader || null;
}

function handle(ev) {
  for (const need of apply(model, ev)) {
    if (need.unit) readUnit(need.unit);
    if (need.machines) readMachines('machines');
  }
  page.onEvent(ev);
  changed();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows the event stream for as long as the page is open. The lists are read once the
 * stream has started, so that every change after them comes as an event (one that the lists
 * already show changes nothing: events apply idempotently). When the stream breaks or the
 * server ends it, it resumes after the last revision seen (a little before: repeats are
 * harmless, losses are not); only when etcd has compacted what was missed is everything read
 * again.
 */
async function follow() {
  let since = null;
  let delay = 1000;
  for (;;) {
    let resumeAtOnce = false;
    try {
      const response = await fetch(since === null ? EVENTS : `${EVENTS}?since=${since}`);
      if (response.status === 410) { since = null; loaded = false; continue; }
      if (!response.ok) throw new HttpError(response.status, `${response.status} ${response.statusText}`);
      const lines = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      for (;;) {
        const { value, done } = await lines.read();
        if (done) break;
        text += value;
        let end;
        while ((end = text.indexOf('\n')) >= 0) {
          const line = text.slice(0, end);
          text = text.slice(end + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          if (ev.type === 'started') {
            delay = 1000;
            if (since === null) since = ev.revision;
            if (!loaded) {
              model.revision = ev.revision;
              await loadAll();
              loaded = true;
            }
            showLive('Live', true);
            changed();
          } else if (ev.type === 'ended') {
            since = ev.revision;
            resumeAtOnce = true;
            showLive(`The server ended the stream (${ev.reason}); resuming…`, false);
          } else {
            handle(ev);
            since = Math.max(ev.revision - 1, 0);
          }
        }
      }
      if (!resumeAtOnce) throw new Error('the stream ended');
    } catch (e) {
      showLive(`Disconnected (${e.message}); reconnecting in ${Math.round(delay / 1000)} s`, false);
      await sleep(delay);
      delay = Math.min(delay * 2, 30000);
    }
  }
}

function showLive(text, ok) {
  const live = document.getElementById('live');
  live.textContent = ok ? `${text} · revision ${model.revision}` : text;
  live.className = `live ${ok ? 'ok' : 'bad'}`;
  live.dataset.ok = ok ? 'true' : 'false';
}

let scheduled = false;
/** Renders once after the events of one read are applied. */
function changed() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    if (!loaded) return;
    const live = document.getElementById('live');
    if (live.dataset.ok === 'true') showLive('Live', true);
    page.update();
    for (const w of [...waiters]) w();
  });
}

/** Resolves once `done()` holds after a change, or rejects after `ms`. */
function until(done, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`${what} did not happen within ${ms / 1000} s`)); }, ms);
    const check = () => { if (done()) { clearTimeout(timer); waiters.delete(check); resolve(); } };
    waiters.add(check);
    check();
  });
}

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces a region's content, keeping the keyboard focus on the element with the same key. */
function fill(region, ...children) {
  const focused = document.activeElement;
  const key = focused && region.contains(focused) ? focused.dataset.key : undefined;
  region.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (key) {
    const again = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

const short = (id) => (id ? `${id.slice(0, 8)}…` : '');
function machineName(id) {
  const m = model.machines.get(id);
  return m && m.hostname ? m.hostname : short(id);
}
function machineLink(id) {
  return h('span', { class: 'mono', title: id }, machineName(id));
}
const cell = (label, ...content) => h('td', { 'data-label': label }, ...content);
function badge(status) {
  return h('span', { class: `badge ${BADGE[status] || ''}`, 'data-status': status }, status);
}
function table(caption, headings, bodies, cls) {
  return h('div', { class: 'scroll' },
    h('table', { class: cls || 'cards-on-phone' },
      h('caption', { class: 'skip' }, caption),
      h('thead', {}, h('tr', {}, headings.map((t) => h('th', { scope: 'col' }, t)))),
      bodies));
}

// ---------------------------------------------------------------- the pages

function machineRows() {
  const units = [...model.units.values()];
  return [...model.machines.values()]
    .sort((a, b) => (a.hostname || a.id).localeCompare(b.hostname || b.id))
    .map((m) => {
      const count = units.filter((u) => (u.machineIDs || []).includes(m.id)).length;
      const meta = Object.entries(m.metadata || {}).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`));
      const status = m.lost ? h('span', { class: 'badge bad' }, 'lost')
        : m.drained ? h('span', { class: 'badge warn' }, 'drained')
          : h('span', { class: 'badge ok' }, 'up');
      return h('tr', { 'data-machine': m.id },
        cell('Machine', h('span', { class: 'mono', title: m.id }, short(m.id)), ' ',
          model.leader === m.id ? h('span', { class: 'badge leader', title: 'this machine\u2019s engine leads' }, 'leader') : null),
        cell('Hostname', m.hostname || ''),
        cell('Address', h('span', { class: 'mono' }, m.primaryIP || '')),
        cell('Metadata', meta.length ? meta : h('span', { class: 'muted' }, 'none')),
        cell('Version', m.version || ''),
        cell('Units', String(count)),
        cell('Status', status));
    });
}

function machinesTable() {
  return table('Machines', ['Machine', 'Hostname', 'Address', 'Metadata', 'Version', 'Units', 'Status'],
    h('tbody', {}, machineRows()));
}

function unitRow(u) {
  const states = model.states.get(u.name) || new Map();
  const status = statusOf(u, states);
  const placed = u.machineIDs || [];
  const systemd = placed.map((m) => {
    const s = states.get(m);
    return h('div', {}, h('span', { class: 'muted' }, `${machineName(m)}: `),
      s ? h('span', { class: `state-${s.active}` }, `${s.active}/${s.sub}`) : h('span', { class: 'muted' }, 'no report'));
  });
  return h('tr', { 'data-unit': u.name, 'data-status': status },
    cell('Unit', h('a', { href: unitPage(u.name), 'data-key': `unit:${u.name}` }, u.name)),
    cell('Description', option(u, 'Unit', 'Description')),
    cell('Desired', u.desiredState || ''),
    cell('Current', u.currentState || ''),
    cell('Machines', placed.length ? placed.map((m, i) => [i ? ', ' : '', machineLink(m)]) : h('span', { class: 'muted' }, u.global ? 'every machine' : 'none')),
    cell('systemd', systemd),
    cell('Status', badge(status), u.reason ? h('div', { class: 'reason' }, u.reason) : null));
}

function unitsTable(units) {
  const bodies = groups(units).map((g) => h('tbody', { class: g.template ? 'group' : null, 'data-template': g.template },
    g.template ? h('tr', {}, h('th', { colspan: 7, scope: 'rowgroup' },
      `${g.template} `, h('span', { class: 'muted' }, `template, ${g.units.filter((u) => u.name !== g.template).length} instance(s)`))) : null,
    g.units.map(unitRow)));
  return table('Units', ['Unit', 'Description', 'Desired', 'Current', 'Machines', 'systemd', 'Status'],
    bodies.length ? bodies : h('tbody', {}, h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No unit matches.'))));
}

function eventText(ev) {
  const m = (id) => machineName(id);
  switch (ev.type) {
    case 'started': return `following from revision ${ev.revision}`;
    case 'submitted': return `${ev.unit} (desired ${ev.desired}${ev.replaced ? ', replaced' : ''})`;
    case 'desired_state_changed': return `${ev.unit}: ${ev.from} → ${ev.to}`;
    case 'start_requested': return `${ev.unit}: start again (#${ev.request})`;
    case 'placed': return `${ev.unit} on ${ev.machines.map(m).join(', ')}`;
    case 'unplaced': return ev.unit;
    case 'unplaceable': return `${ev.unit}: ${ev.reason}`;
    case 'state_changed': return `${ev.unit} on ${m(ev.machine)}: ${ev.load} ${ev.active} ${ev.sub}${ev.message ? ` (${ev.message})` : ''}`;
    case 'state_removed': return `${ev.unit} on ${m(ev.machine)}`;
    case 'destroyed': return ev.unit;
    case 'machine_joined': return `${ev.hostname || short(ev.machine)} (${ev.ip})`;
    case 'machine_changed': return m(ev.machine);
    case 'machine_lost': return ev.hostname || short(ev.machine);
    case 'leader_changed': return ev.leader ? m(ev.leader) : 'no engine leads';
    default: return '';
  }
}

function feed(n) {
  const items = model.feed.slice(0, n);
  if (!items.length) return h('p', { class: 'muted' }, 'Nothing happened since the page was opened.');
  return h('ol', { class: 'feed', 'aria-label': 'Recent events, newest first' }, items.map(({ ev, at }) =>
    h('li', { 'data-type': ev.type },
      h('span', { class: 'rev' }, String(ev.revision)),
      h('time', { class: 'muted', datetime: at.toISOString() }, at.toLocaleTimeString()),
      h('span', { class: 'type' }, ev.type.replaceAll('_', ' ')),
      h('span', {}, eventText(ev)))));
}

/** A page: builds its frame once, then redraws its live regions after each change. */
const pages = {
  overview: {
    title: 'Overview',
    mount(main) {
      this.cards = h('div', { class: 'cards' });
      this.machines = h('section', { 'aria-labelledby': 'h-machines' });
      this.units = h('section', { 'aria-labelledby': 'h-units' });
      this.feed = h('section', { 'aria-labelledby': 'h-feed' });
      main.append(h('h1', {}, 'The cluster'), this.cards,
        h('h2', { id: 'h-machines' }, h('a', { href: '/ui/machines' }, 'Machines')), this.machines,
        h('h2', { id: 'h-units' }, h('a', { href: '/ui/units' }, 'Units')), this.units,
        h('h2', { id: 'h-feed' }, h('a', { href: '/ui/events' }, 'Recent events')), this.feed);
    },
    update() {
      const units = [...model.units.values()];
      const count = (s) => units.filter((u) => statusOf(u, model.states.get(u.name)) === s).length;
      const machines = [...model.machines.values()];
      const card = (n, label) => h('div', { class: 'card' }, h('span', { class: 'n' }, String(n)), label);
      fill(this.cards,
        card(machines.filter((m) => !m.lost).length, 'machines up'),
        card(units.length, 'units'),
        card(count('running'), 'running'),
        card(count('failed'), 'failed'),
        card(count('unplaced'), 'unplaced'),
        h('div', { class: 'card' }, h('span', { class: 'n' }, model.leader ? machineName(model.leader) : '—'), 'engine leader'));
      fill(this.machines, machinesTable());
      fill(this.units, unitsTable(units));
      fill(this.feed, feed(10));
    },
  },

  machines: {
    title: 'Machines',
    mount(main) {
      this.region = h('div');
      main.append(h('h1', {}, 'Machines'), this.region);
    },
    update() { fill(this.region, machinesTable()); },
  },

  units: {
    title: 'Units',
    mount(main) {
      const q = new URLSearchParams(location.search);
      this.name = h('input', { type: 'search', name: 'name', id: 'f-name', value: q.get('name') || '', placeholder: 'web@', autocomplete: 'off' });
      this.state = h('select', { name: 'state', id: 'f-state' }, h('option', { value: '' }, 'any'),
        STATUSES.map((s) => h('option', { value: s, selected: q.get('state') === s }, s)));
      this.machine = h('select', { name: 'machine', id: 'f-machine' });
      this.wanted = q.get('machine') || '';
      this.region = h('div', { 'aria-live': 'off' });
      this.count = h('p', { class: 'muted', id: 'units-count' });
      const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter units', onsubmit: (e) => e.preventDefault() },
        h('label', { for: 'f-name' }, 'Name contains', this.name),
        h('label', { for: 'f-state' }, 'Status', this.state),
        h('label', { for: 'f-machine' }, 'Machine', this.machine));
      const again = () => { this.keep(); this.update(); };
      this.name.addEventListener('input', again);
      this.state.addEventListener('change', again);
      this.machine.addEventListener('change', () => { this.wanted = this.machine.value; again(); });
      main.append(h('h1', {}, 'Units'), form, this.count, this.region);
    },
    /** The filters in the address, so that a filtered list can be linked and reloaded. */
    keep() {
      const q = new URLSearchParams();
      if (this.name.value) q.set('name', this.name.value);
      if (this.state.value) q.set('state', this.state.value);
      if (this.wanted) q.set('machine', this.wanted);
      const s = q.toString();
      history.replaceState(null, '', s ? `?${s}` : location.pathname);
    },
    update() {
      const options = [h('option', { value: '' }, 'any'),
        [...model.machines.values()].map((m) => h('option', { value: m.id, selected: m.id === this.wanted }, `${m.hostname || short(m.id)} (${short(m.id)})`))];
      if (document.activeElement !== this.machine) fill(this.machine, options);
      const filter = { name: this.name.value, state: this.state.value, machine: this.wanted };
      const all = [...model.units.values()];
      const shown = all.filter((u) => matches(u, model.states.get(u.name), filter));
      this.count.textContent = `${shown.length} of ${all.length} units`;
      fill(this.region, unitsTable(shown));
    },
  },

  unit: {
    title: 'Unit',
    mount(main, name) {
      this.name = name;
      document.title = `${name} · flotte`;
      this.facts = h('div');
      this.says = h('p', { role: 'status', 'aria-live': 'polite', id: 'action-status' });
      const act = (label, run, cls) => h('button', { type: 'button', class: cls, 'data-action': label.toLowerCase(), onclick: () => this.act(label, run) }, label);
      this.buttons = h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' },
        act('Start', () => this.setDesired('launched')),
        act('Stop', () => this.setDesired('loaded')),
        act('Restart', () => this.restart()),
        act('Destroy', () => this.destroy(), 'danger'));
      this.states = h('div');
      this.status = h('div', { id: 'unit-status' });
      this.file = h('div');
      main.append(h('p', {}, h('a', { href: '/ui/units' }, '← Units')), h('h1', {}, name), this.buttons, this.says, this.facts,
        h('h2', {}, 'Machines'), this.states,
        h('h2', {}, 'Status and journal'), this.status,
        h('h2', {}, 'Unit file'), this.file);
      this.readStatus();
    },
    async act(label, run) {
      this.says.className = '';
      this.says.textContent = `${label}…`;
      for (const b of this.buttons.querySelectorAll('button')) b.disabled = true;
      try {
        this.says.textContent = (await run()) || `${label}: done.`;
      } catch (e) {
        this.says.className = 'error';
        this.says.textContent = `${label} failed: ${e.message}`;
      } finally {
        for (const b of this.buttons.querySelectorAll('button')) b.disabled = false;
      }
    },
    async setDesired(desiredState) {
      await request('PUT', unitPath(this.name), { desiredState });
      return desiredState === 'launched' ? 'Start asked: the unit is launched.' : 'Stop asked: the unit is loaded, not running.';
    },
    /** As `flottectl restart`: stopped, seen stopped on every machine, then started again. */
    async restart() {
      const u = model.units.get(this.name);
      if (u && u.desiredState === 'launched') {
        await request('PUT', unitPath(this.name), { desiredState: 'loaded' });
        this.says.textContent = 'Restart: waiting for the unit to stop…';
        await until(() => {
          const states = model.states.get(this.name) || new Map();
          return ![...states.values()].some((s) => isRunning(s.active));
        }, 60000, 'the stop');
      }
      await request('PUT', unitPath(this.name), { desiredState: 'launched' });
      return 'Restarted: stopped, then started again.';
    },
    async destroy() {
      const dialog = document.getElementById('confirm');
      document.getElementById('confirm-text').textContent = `${this.name} is stopped on every machine and removed from the cluster. This cannot be undone.`;
      const answer = await new Promise((resolve) => {
        dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
        dialog.returnValue = 'cancel';
        dialog.showModal();
      });
      if (answer !== 'destroy') return 'Destroy cancelled.';
      await request('DELETE', unitPath(this.name));
      return `${this.name} is destroyed.`;
    },
    onEvent(ev) {
      if (ev.unit === this.name && (ev.type === 'state_changed' || ev.type === 'state_removed' || ev.type === 'placed')) this.readStatus();
    },
    /** The status route of each machine and its journal's tail; read again on the unit's state events. */
    readStatus: null,
    update() {
      const u = model.units.get(this.name);
      if (!u) {
        fill(this.facts, h('p', { class: 'note', id: 'gone' }, `There is no unit ${this.name} in the cluster (any more).`));
        fill(this.states); fill(this.file);
        this.buttons.hidden = true;
        return;
      }
      this.buttons.hidden = isTemplate(u.name);
      const states = model.states.get(u.name) || new Map();
      const status = statusOf(u, states);
      const xfleet = (u.options || []).filter((o) => o.section === 'X-Fleet');
      fill(this.facts, h('dl', { class: 'facts' },
        h('dt', {}, 'Description'), h('dd', {}, option(u, 'Unit', 'Description') || h('span', { class: 'muted' }, 'none')),
        h('dt', {}, 'Status'), h('dd', {}, badge(status)),
        u.reason ? [h('dt', {}, 'Why not placed'), h('dd', { class: 'reason' }, u.reason)] : null,
        h('dt', {}, 'Desired state'), h('dd', { id: 'desired' }, u.desiredState || ''),
        h('dt', {}, 'Current state'), h('dd', { id: 'current' }, u.currentState || ''),
        h('dt', {}, 'Global'), h('dd', {}, u.global ? 'yes: it runs on every machine it may' : 'no'),
        h('dt', {}, '[X-Fleet]'), h('dd', {}, xfleet.length ? h('ul', {}, xfleet.map((o) => h('li', { class: 'mono' }, `${o.name}=${o.value}`))) : h('span', { class: 'muted' }, 'no requirements: any machine'))));
      const rows = [...new Set([...(u.machineIDs || []), ...states.keys()])].map((m) => {
        const s = states.get(m);
        return h('tr', { 'data-machine': m },
          cell('Machine', machineLink(m)),
          cell('Load', s ? s.load : ''),
          cell('Active', s ? h('span', { class: `state-${s.active}` }, s.active) : h('span', { class: 'muted' }, 'no report')),
          cell('Sub', s ? s.sub : ''),
          cell('Message', s ? s.message : ''));
      });
      fill(this.states, rows.length ? table('Machines of the unit', ['Machine', 'Load', 'Active', 'Sub', 'Message'], h('tbody', {}, rows))
        : h('p', { class: 'muted' }, 'Placed on no machine.'));
      fill(this.file, h('pre', { id: 'unit-file' }, unitText(u)));
    },
  },

  services: {
    title: 'Services',
    mount(main) {
      this.region = h('div');
      this.list = null;
      const refresh = h('button', { type: 'button', onclick: () => this.read() }, 'Read again');
      main.append(h('h1', {}, 'Services'),
        h('p', { class: 'muted' }, 'Keys announced under /services/ (flottectl announce), read when the page opens and when a unit\u2019s state changes.'),
        h('div', { class: 'actions' }, refresh), this.region);
      this.read();
    },
    read: null,
    onEvent(ev) {
      if (['state_changed', 'state_removed', 'machine_lost', 'destroyed'].includes(ev.type)) this.read();
    },
    update() {
      if (this.list === null) { fill(this.region, h('p', { class: 'muted' }, 'Reading…')); return; }
      if (this.list instanceof Error) { fill(this.region, h('p', { class: 'error' }, `Cannot read the services: ${this.list.message}`)); return; }
      if (!this.list.length) { fill(this.region, h('p', { class: 'muted' }, 'Nothing is announced.')); return; }
      fill(this.region, table('Services', ['Key', 'Value', 'TTL', 'Machine', 'Unit'], h('tbody', {}, this.list.map((s) =>
        h('tr', { 'data-key-name': s.key },
          cell('Key', h('span', { class: 'mono' }, s.key)),
          cell('Value', h('span', { class: 'mono' }, s.value)),
          cell('TTL', s.ttl === undefined ? 'no lease' : `${s.ttl} s`),
          cell('Machine', s.machine ? machineLink(s.machine) : s.hostname),
          cell('Unit', s.unit ? h('a', { href: unitPage(s.unit) }, s.unit) : ''))))));
    },
  },

  events: {
    title: 'Events',
    mount(main) {
      this.region = h('div');
      main.append(h('h1', {}, 'Events'), h('p', { class: 'muted' }, `What happened since the page was opened, newest first (the last ${FEED_SIZE}).`), this.region);
    },
    update() { fill(this.region, feed(FEED_SIZE)); },
  },
};

/** The unit file as the cluster has it, one section after the other as its options come. */
export function unitText(u) {
  let text = '';
  let section = null;
  for (const o of u.options || []) {
    if (o.section !== section) {
      text += `${section === null ? '' : '\n'}[${o.section}]\n`;
      section = o.section;
    }
    text += `${o.name}=${o.value || ''}\n`;
  }
  return text || '(no options)';
}

function renderStatus(region, name, json) {
  const entries = Array.isArray(json) ? json
    : Object.values(json).find((v) => Array.isArray(v) && v.every((x) => x && typeof x === 'object')) || [json];
  return entries.map((entry) => {
    const machine = entry.machine || entry.machineID || entry.machineId || '';
    const facts = [];
    let lines = null;
    for (const [k, v] of Object.entries(entry)) {
      if (k === 'machine' || k === 'machineID' || k === 'machineId' || k === 'unit' || k === 'name') continue;
      if (Array.isArray(v)) lines = v;
      else if (v !== null && typeof v === 'object') facts.push([k, JSON.stringify(v)]);
      else facts.push([k, String(v)]);
    }
    return h('div', { class: 'panel', 'data-machine': machine },
      h('h3', {}, machine ? machineName(machine) : name),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      lines ? h('pre', { class: 'status-lines' }, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')) : null,
      h('div', { class: 'journal', 'data-machine': machine }));
  });
}

pages.unit.readStatus = (() => {
  const read = reader(async () => {
    const self = pages.unit;
    const base = flotteUnitPath(self.name);
    let json;
    try {
      json = await getJSON(`${base}/status`);
    } catch (e) {
      if (e.status === 404) {
        fill(self.status, h('p', { class: 'note', id: 'status-unavailable' },
          `Status and journal are not available here: this flotted answered 404 to ${base}/status (${e.message}).`));
        return;
      }
      throw e;
    }
    fill(self.status, renderStatus(self.status, self.name, json));
    for (const box of self.status.querySelectorAll('.journal')) {
      const machine = box.dataset.machine;
      const q = new URLSearchParams({ lines: String(JOURNAL_LINES) });
      if (machine) q.set('machine', machine);
      try {
        const text = await (await request('GET', `${base}/journal?${q}`)).text();
        fill(box, h('h4', {}, `Journal, last ${JOURNAL_LINES} lines`), h('pre', { class: 'journal-lines' }, text || '(empty)'));
      } catch (e) {
        fill(box, h('p', { class: e.status === 404 ? 'note' : 'error' }, `The journal is not available: ${e.message}`));
      }
    }
  });
  return () => read('status');
})();

pages.services.read = (() => {
  const read = reader(async () => {
    try {
      pages.services.list = (await getJSON(SERVICES)).services || [];
    } catch (e) {
      pages.services.list = e;
    }
  });
  return () => read('services');
})();

function route(path) {
  const rest = path.replace(/^\/ui\/?/, '');
  if (rest === '') return ['overview'];
  if (rest.startsWith('units/')) return ['unit', decodeURIComponent(rest.slice('units/'.length))];
  return pages[rest] ? [rest] : ['overview'];
}

const [name, arg] = route(location.pathname);
const page = pages[name];
if (!page.onEvent) page.onEvent = () => {};
if (name !== 'unit') document.title = `${page.title} · flotte`;
for (const a of document.querySelectorAll('nav a[data-page]')) {
  if (a.dataset.page === name || (name === 'unit' && a.dataset.page === 'units')) a.setAttribute('aria-current', 'page');
}
const main = document.getElementById('main');
main.replaceChildren();
page.mount(main, arg);
// For a look from the browser's console.
window.flotte = { model };
follow();
