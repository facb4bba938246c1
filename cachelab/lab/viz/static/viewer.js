// cachelab trace viewer: one or more traces drawn in SVG on one clock.
// The same module runs as an anywidget (a live kernel) and inlined in static HTML
// (a small stand-in model): it only uses model.get/set/on/save_changes.

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 150, NODE_H = 112, GAP = 22, REDIS_W = 250, REDIS_H = 52;
const REDIS_Y = 34, NODE_Y = 178, ROWS = 5, HEIGHT = 372;
const SPEEDS = [0.25, 0.5, 1, 2, 4];

function el(tag, attrs, parent, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, cls, parent, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function ms(t) {
  return (t * 1000).toFixed(t < 0.01 ? 2 : 1) + " ms";
}

// -- one pane: layout, state at time t, drawing ------------------------------

function layout(pane) {
  const n = Math.max(pane.nodes.length, 1);
  const width = Math.max(480, n * (NODE_W + GAP) + GAP);
  const spots = {};
  pane.nodes.forEach((name, i) => {
    const cx = GAP + NODE_W / 2 + i * (NODE_W + GAP) + (width - n * (NODE_W + GAP) - GAP) / 2;
    spots[name] = { x: cx, y: NODE_Y };
  });
  return { width, spots, redis: { x: width / 2, y: REDIS_Y } };
}

function stateAt(pane, t) {
  const caches = {}, store = {}, down = new Set();
  for (const name of pane.nodes) caches[name] = {};
  for (const ev of pane.events) {
    if (ev.t > t) break;
    const cache = caches[ev.node];
    if (cache && ev.clear) for (const k of Object.keys(cache)) delete cache[k];
    if (cache && ev.cache) for (const [k, v] of ev.cache) { if (v === null) delete cache[k]; else cache[k] = v; }
    if (ev.store !== undefined) store[ev.key] = ev.store;
    if (ev.down === true) down.add(ev.node);
    if (ev.down === false) down.delete(ev.node);
  }
  return { caches, store, down };
}

function endpoints(lay, ev, role) {
  const node = lay.spots[ev.node];
  if (!node) return null;
  const top = { x: node.x, y: node.y };
  const redis = { x: lay.redis.x, y: lay.redis.y + REDIS_H };
  return role === "write" ? [top, redis] : [redis, top];
}

function drawPane(view, p, t) {
  const { pane, lay, svg } = p;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const state = stateAt(pane, t);
  const linger = view.linger;
  const kinds = pane.kinds;
  // the channel from Redis to every node
  for (const name of pane.nodes) {
    const s = lay.spots[name];
    el("line", { x1: lay.redis.x, y1: lay.redis.y + REDIS_H, x2: s.x, y2: s.y, class: "clv-wire" }, svg);
  }
  const redis = el("g", { class: "clv-redis" }, svg);
  el("rect", { x: lay.redis.x - REDIS_W / 2, y: lay.redis.y, width: REDIS_W, height: REDIS_H, rx: 8 }, redis);
  el("text", { x: lay.redis.x, y: lay.redis.y + 19, class: "clv-title" }, redis, "Redis");
  const stored = Object.entries(state.store).sort();
  const shown = stored.slice(0, 4).map(([k, v]) => `${k} v${v}`).join("  ");
  const more = stored.length > 4 ? `  +${stored.length - 4}` : "";
  el("text", { x: lay.redis.x, y: lay.redis.y + 39, class: "clv-keys" }, redis, (shown || "empty") + more);
  const recent = pane.events.filter((ev) => ev.t <= t && t < ev.t + linger);
  const staleOn = new Set(recent.filter((ev) => ev.kind === "stale_read").map((ev) => ev.node));
  for (const name of pane.nodes) drawNode(p, name, state, staleOn.has(name), recent, t);
  drawFlights(view, p, t);
}

function drawNode(p, name, state, stale, recent, t) {
  const { pane, lay, svg } = p;
  const s = lay.spots[name];
  const down = state.down.has(name);
  const g = el("g", { class: "clv-node", "data-node": name, "data-stale": stale ? "1" : "0",
    "data-down": down ? "1" : "0" }, svg);
  el("rect", { x: s.x - NODE_W / 2, y: s.y, width: NODE_W, height: NODE_H, rx: 8,
    class: "clv-box" + (down ? " clv-down" : "") + (stale ? " clv-stale" : "") }, g);
  el("text", { x: s.x, y: s.y + 18, class: "clv-title" }, g, name + (down ? " (cut off)" : ""));
  const entries = Object.entries(state.caches[name] || {}).sort();
  const staleKeys = new Set(recent.filter((ev) => ev.kind === "stale_read" && ev.node === name).map((ev) => ev.key));
  entries.slice(0, ROWS).forEach(([k, v], row) => {
    el("text", { x: s.x, y: s.y + 38 + row * 15, class: "clv-entry" + (staleKeys.has(k) ? " clv-bad" : ""),
      "data-key": k }, g, `${k} v${v}`);
  });
  if (entries.length > ROWS) el("text", { x: s.x, y: s.y + NODE_H - 6, class: "clv-more" }, g, `+${entries.length - ROWS} more`);
  if (!entries.length) el("text", { x: s.x, y: s.y + 40, class: "clv-more" }, g, "empty");
  const marks = recent.filter((ev) => ev.node === name && pane.kinds[ev.kind].role !== "quiet"
    && pane.kinds[ev.kind].role !== "message" && pane.kinds[ev.kind].role !== "write");
  marks.slice(-4).forEach((ev, i) => drawMark(p, ev, s.x, s.y + NODE_H + 6 + i * 19));
}

function drawMark(p, ev, x, y) {
  const kind = p.pane.kinds[ev.kind];
  const label = kind.label + (ev.key ? ` ${ev.key} v${ev.v}` : "");
  const g = el("g", { class: "clv-mark", "data-kind": ev.kind, "data-index": ev.index }, p.svg);
  const w = Math.min(NODE_W + 10, 14 + label.length * 6.4);
  el("rect", { x: x - w / 2, y, width: w, height: 16, rx: 8, fill: kind.color }, g);
  el("text", { x, y: y + 12, class: "clv-mark-text" }, g, label);
  g.addEventListener("click", () => p.view.select(p.i, ev.index));
}

function drawFlights(view, p, t) {
  const { pane, lay, svg } = p;
  for (const ev of pane.events) {
    const role = pane.kinds[ev.kind].role;
    if (!["write", "message", "lost", "reply"].includes(role) || ev.since === undefined) continue;
    const ends = endpoints(lay, ev, role);
    if (!ends) continue;
    const [a, b] = ends;
    const color = pane.kinds[ev.kind].color;
    if (ev.since <= t && t < ev.t) {
      const f = (t - ev.since) / (ev.t - ev.since);
      const x = a.x + (b.x - a.x) * f, y = a.y + (b.y - a.y) * f;
      const g = el("g", { class: "clv-dot", "data-kind": ev.kind, "data-node": ev.node, "data-index": ev.index }, svg);
      el("circle", { cx: x, cy: y, r: 6, fill: role === "lost" ? pane.kinds.deliver?.color || "#1f6fb4" : color }, g);
      el("text", { x: x + 9, y: y + 4, class: "clv-dot-text" }, g, `${ev.key} v${ev.v}`);
      g.addEventListener("click", () => view.select(p.i, ev.index));
    } else if (role === "lost" && ev.t <= t && t < ev.t + view.linger) {
      const x = a.x + (b.x - a.x) * 0.8, y = a.y + (b.y - a.y) * 0.8;
      const g = el("g", { class: "clv-lost", "data-node": ev.node, "data-index": ev.index }, svg);
      el("path", { d: `M${x - 8},${y - 8} L${x + 8},${y + 8} M${x - 8},${y + 8} L${x + 8},${y - 8}`, class: "clv-cross" }, g);
      el("text", { x: x + 11, y: y + 4, class: "clv-lost-text" }, g, `lost ${ev.key} v${ev.v} (${ev.detail})`);
      g.addEventListener("click", () => view.select(p.i, ev.index));
    }
  }
}

// -- the side panels: legend, caption, log ------------------------------------

function legend(pane, parent) {
  const box = html("div", "clv-legend", parent);
  for (const [name, kind] of Object.entries(pane.kinds)) {
    if (kind.role === "quiet") continue;
    const item = html("span", "clv-legend-item", box);
    const swatch = html("span", "clv-swatch", item);
    swatch.style.background = kind.color;
    html("span", "", item, kind.label);
    item.title = name + (kind.safeguard ? ` (safeguard: ${kind.safeguard})` : "");
  }
}

function buildLog(view, p, parent) {
  const log = html("ol", "clv-log", parent);
  p.rows = p.pane.events.map((ev) => {
    const li = html("li", "", log, `${ms(ev.t)}  ${ev.head}`);
    li.dataset.index = ev.index;
    li.addEventListener("click", () => view.select(p.i, ev.index));
    return li;
  });
  p.log = log;
}

function updateLog(p, t) {
  let current = null;
  for (const li of p.rows) {
    const ev = p.pane.events[+li.dataset.index];
    const past = ev.t <= t;
    li.classList.toggle("clv-future", !past);
    li.classList.toggle("clv-now", false);
    if (past && p.pane.kinds[ev.kind].role !== "quiet") current = li;
  }
  if (current) {
    current.classList.add("clv-now");
    const top = current.offsetTop - p.log.offsetTop;
    if (top < p.log.scrollTop || top > p.log.scrollTop + p.log.clientHeight - 20) p.log.scrollTop = top - 40;
  }
  return current ? +current.dataset.index : -1;
}

function caption(p, index) {
  const ev = p.pane.events[index];
  if (!ev) {
    p.caption.textContent = "Press ▶ to play, or step through the events.";
    return;
  }
  const kind = p.pane.kinds[ev.kind];
  p.caption.textContent = "";
  html("b", "", p.caption, `${ms(ev.t)} · ${ev.head}`);
  html("div", "", p.caption, ev.why);
  if (kind.safeguard) html("div", "clv-guard", p.caption, `safeguard: ${kind.safeguard}`);
}

// -- the view: controls and the clock ------------------------------------------

class View {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.frame = null;
    this.last = null;
    this.build();
    model.on("change:panes", () => this.build());
    model.on("change:time", () => { if (!this.frame) this.draw(); });
    model.on("change:playing", () => this.syncPlaying());
    model.on("change:selected", () => this.draw());
  }

  build() {
    this.stop();
    const root = this.root;
    root.textContent = "";
    root.className = "clv";
    this.panes = (this.model.get("panes") || []).map((pane, i) => {
      pane.events.forEach((ev, j) => { ev.index = j; });
      return { pane, i, view: this, lay: layout(pane) };
    });
    this.stops = this.model.get("stops") || [];
    const all = this.panes.flatMap((p) => p.pane.events.flatMap((ev) => [ev.t, ev.since ?? ev.t]));
    this.t0 = all.length ? Math.min(...all) : 0;
    this.t1 = all.length ? Math.max(...all) : 1;
    this.span = Math.max(this.t1 - this.t0, 1e-6);
    this.linger = this.span / 25;
    this.controls(html("div", "clv-controls", root));
    const row = html("div", "clv-panes", root);
    for (const p of this.panes) this.paneBox(p, row);
    this.draw();
    this.syncPlaying();
  }

  paneBox(p, row) {
    const box = html("div", "clv-pane", row);
    box.dataset.pane = p.i;
    const head = html("div", "clv-head", box);
    if (p.pane.title) html("span", "clv-pane-title", head, p.pane.title);
    if (p.pane.verdict) {
      const v = html("span", "clv-verdict", head, p.pane.verdict);
      if (p.pane.ok === true) v.classList.add("clv-ok");
      if (p.pane.ok === false) v.classList.add("clv-fail");
    }
    p.svg = el("svg", { viewBox: `0 0 ${p.lay.width} ${HEIGHT}`, class: "clv-svg", role: "img" }, box);
    p.svg.style.maxWidth = `${p.lay.width * 1.25}px`;
    legend(p.pane, box);
    p.caption = html("div", "clv-caption", box);
    buildLog(this, p, box);
  }

  controls(bar) {
    const button = (label, title, action, cls) => {
      const b = html("button", "clv-button " + cls, bar, label);
      b.title = title;
      b.addEventListener("click", action);
      return b;
    };
    button("|◀", "back to the start", () => this.seek(this.t0, true), "clv-start");
    button("◀", "step back one event", () => this.step(-1), "clv-back");
    this.playButton = button("▶", "play / pause", () => this.toggle(), "clv-play");
    button("▶|", "step one event", () => this.step(1), "clv-step");
    this.scrub = html("input", "clv-scrub", bar);
    Object.assign(this.scrub, { type: "range", min: 0, max: 1000, step: 1, value: 0 });
    this.scrub.addEventListener("input", () => this.seek(this.t0 + (this.scrub.value / 1000) * this.span, true));
    this.speed = html("select", "clv-speed", bar);
    for (const s of SPEEDS) {
      const o = html("option", "", this.speed, `${s}×`);
      o.value = s;
    }
    this.speed.value = String(this.model.get("speed") || 1);
    this.speed.addEventListener("change", () => { this.model.set("speed", +this.speed.value); this.model.save_changes(); });
    this.clock = html("span", "clv-clock", bar);
  }

  time() {
    const t = this.model.get("time");
    return t === null || t === undefined || t < this.t0 ? this.t0 : Math.min(t, this.t1);
  }

  draw() {
    const t = this.time();
    this.root.dataset.time = t;
    const selected = this.model.get("selected") || [];
    let count = 0;
    for (const p of this.panes) {
      drawPane(this, p, t);
      const current = updateLog(p, t);
      const pick = selected.length === 2 && selected[0] === p.i ? selected[1] : current;
      caption(p, pick);
      p.svg.dataset.event = current;
    }
    count = this.stops.filter((s) => s <= t).length;
    this.root.dataset.step = count;
    this.scrub.value = Math.round(((t - this.t0) / this.span) * 1000);
    this.clock.textContent = `t = ${ms(t)} / ${ms(this.t1)} · event ${count} of ${this.stops.length}`;
  }

  seek(t, save) {
    this.model.set("time", Math.max(this.t0, Math.min(t, this.t1)));
    this.model.set("selected", []);
    if (save) this.model.save_changes();
    this.draw();
  }

  step(direction) {
    this.pause();
    const t = this.time();
    const next = direction > 0 ? this.stops.find((s) => s > t + 1e-12)
      : [...this.stops].reverse().find((s) => s < t - 1e-12);
    this.seek(next === undefined ? (direction > 0 ? this.t1 : this.t0) : next, true);
  }

  select(i, index) {
    const ev = this.panes[i].pane.events[index];
    this.pause();
    this.model.set("time", ev.t);
    this.model.set("selected", [i, index]);
    this.model.save_changes();
    this.draw();
  }

  toggle() {
    this.model.set("playing", !this.model.get("playing"));
    this.model.save_changes();
    this.syncPlaying();
  }

  pause() {
    if (this.model.get("playing")) {
      this.model.set("playing", false);
      this.model.save_changes();
    }
    this.stop();
  }

  syncPlaying() {
    const playing = !!this.model.get("playing");
    if (this.playButton) this.playButton.textContent = playing ? "❚❚" : "▶";
    if (playing && !this.frame) {
      if (this.time() >= this.t1) this.model.set("time", this.t0);
      this.last = null;
      this.frame = requestAnimationFrame((now) => this.tick(now));
    } else if (!playing) this.stop();
  }

  stop() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = null;
  }

  // Virtual seconds per real second: the shortest flight on screen takes 0.8 s, and an
  // idle stretch is skipped, so a 2 ms message in a 3 s trace is still seen travelling.
  rate(t) {
    let rate = this.span / 12;
    for (const p of this.panes) {
      for (const ev of p.pane.events) {
        if (ev.since !== undefined && ev.since <= t && t < ev.t) rate = Math.min(rate, (ev.t - ev.since) / 0.8);
      }
    }
    return rate * (this.model.get("speed") || 1);
  }

  tick(now) {
    const dt = this.last === null ? 0 : Math.min((now - this.last) / 1000, 0.1);
    this.last = now;
    let t = this.time() + this.rate(this.time()) * dt;
    const next = this.stops.find((s) => s > this.time());
    const nextFlight = this.nextFlight(this.time());
    const target = Math.min(next ?? Infinity, nextFlight);
    if (target !== Infinity && target - t > this.rate(t) * 0.6) t = target - this.rate(t) * 0.1;
    if (t >= this.t1) {
      this.model.set("time", this.t1);
      this.model.set("playing", false);
      this.model.save_changes();
      this.frame = null;
      this.draw();
      this.syncPlaying();
      return;
    }
    this.model.set("time", t);
    this.draw();
    this.frame = requestAnimationFrame((n) => this.tick(n));
  }

  nextFlight(t) {
    let best = Infinity;
    for (const p of this.panes) {
      for (const ev of p.pane.events) if (ev.since !== undefined && ev.since > t && ev.since < best) best = ev.since;
    }
    return best;
  }
}

const CSS = `
.clv { font: 13px/1.35 system-ui, sans-serif; color: #222; background: #fff; padding: 6px; border: 1px solid #ddd; border-radius: 6px; }
.clv-controls { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
.clv-button { font: 15px system-ui, sans-serif; min-width: 36px; height: 30px; border: 1px solid #bbb; border-radius: 4px; background: #f4f4f4; cursor: pointer; color: #222; }
.clv-button:hover { background: #e6eefb; }
.clv-scrub { flex: 1; min-width: 160px; }
.clv-clock { font-family: ui-monospace, monospace; font-size: 12px; white-space: nowrap; }
.clv-panes { display: flex; gap: 10px; flex-wrap: wrap; }
.clv-pane { flex: 1; min-width: 360px; }
.clv-head { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; margin: 2px 0 4px; }
.clv-pane-title { font-weight: 700; font-size: 14px; }
.clv-verdict { padding: 1px 8px; border-radius: 10px; background: #eee; }
.clv-ok { background: #d9f2df; color: #17622d; }
.clv-fail { background: #fbdada; color: #8f1414; }
.clv-svg { width: 100%; height: auto; display: block; }
.clv-wire { stroke: #ccc; stroke-dasharray: 3 3; }
.clv-redis rect { fill: #fde2e2; stroke: #d62728; }
.clv-box { fill: #eaf2fb; stroke: #1f6fb4; stroke-width: 1.2; }
.clv-down { fill: #e3e3e3; stroke: #888; stroke-dasharray: 5 3; }
.clv-stale { stroke: #d62728; stroke-width: 4; }
.clv-title { text-anchor: middle; font-weight: 700; font-size: 14px; }
.clv-keys, .clv-entry { text-anchor: middle; font: 12px ui-monospace, monospace; }
.clv-bad { fill: #d62728; font-weight: 700; }
.clv-more { text-anchor: middle; font-size: 11px; fill: #666; }
.clv-mark { cursor: pointer; }
.clv-mark-text { text-anchor: middle; font-size: 11px; fill: #fff; font-weight: 600; }
.clv-dot { cursor: pointer; }
.clv-dot-text, .clv-lost-text { font: 11px ui-monospace, monospace; fill: #333; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.clv-cross { stroke: #d62728; stroke-width: 3.5; }
.clv-lost-text { fill: #d62728; }
.clv-legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; margin: 4px 0; }
.clv-legend-item { display: inline-flex; align-items: center; gap: 4px; cursor: help; }
.clv-swatch { width: 11px; height: 11px; border-radius: 50%; display: inline-block; }
.clv-caption { min-height: 3.2em; padding: 4px 6px; background: #f7f7f7; border-radius: 4px; }
.clv-guard { color: #6b2c91; font-size: 12px; }
.clv-log { max-height: 130px; overflow-y: auto; margin: 6px 0 0; padding-left: 0; list-style: none; font: 12px ui-monospace, monospace; border-top: 1px solid #eee; }
.clv-log li { padding: 1px 4px; cursor: pointer; white-space: pre; }
.clv-log li:hover { background: #eef; }
.clv-future { color: #aaa; }
.clv-now { background: #fff3c4; }
`;

function render({ model, el: host }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  host.appendChild(style);
  const root = document.createElement("div");
  host.appendChild(root);
  const view = new View(model, root);
  return () => view.stop();
}

// A stand-in for the widget model when no kernel is there (exported HTML).
function staticModel(state) {
  const handlers = {};
  return {
    get: (name) => state[name],
    set: (name, value) => {
      state[name] = value;
      for (const cb of handlers["change:" + name] || []) cb();
    },
    on: (name, cb) => { (handlers[name] = handlers[name] || []).push(cb); },
    save_changes: () => {},
  };
}

function mount(host, state) {
  return render({ model: staticModel(state), el: host });
}

export default { render, mount };
