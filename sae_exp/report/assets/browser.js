/* sae_exp feature browser: renders report.html's embedded data; no network, no libraries.
   Latent records live in zlib+base64 chunks (<script id="sae-chunk-N">) decompressed on demand;
   one card is built at a time. Keys: j / ArrowRight next card, k / ArrowLeft previous card,
   "/" search. */
(function () {
  "use strict";

  const dataEl = document.getElementById("sae-data");
  const DATA = JSON.parse(dataEl.textContent);
  const KIND = dataEl.dataset.kind;
  const app = document.getElementById("app");

  // ----------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && digits === undefined) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return v.toFixed(digits === undefined ? 3 : digits);
  }

  function interval(ci) {
    return ci ? `[${fmt(ci[0], 2)}, ${fmt(ci[1], 2)}]` : "";
  }

  async function unpack(id) {
    const text = document.getElementById("sae-" + id).textContent.trim();
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return JSON.parse(await new Response(stream).text());
  }

  const chunkCache = new Map();
  function getLatent(id) {
    const c = Math.floor(id / DATA.chunk);
    if (!document.getElementById("sae-chunk-" + c)) return Promise.resolve(null);
    if (!chunkCache.has(c)) chunkCache.set(c, unpack("chunk-" + c));
    return chunkCache.get(c).then((arr) => arr.find((r) => r.id === id) || null);
  }

  let tokenIndex = null;
  function getTokenIndex() {
    if (!tokenIndex) tokenIndex = unpack("tokens");
    return tokenIndex;
  }

  function normToken(t) {
    return String(t).replace(/^(##|\u0120|\u2581)/, "").trim().toLowerCase();
  }

  // ----------------------------------------------------------------- overview
  function kvTable(rows) {
    return el("table", { class: "kv" }, rows.filter((r) => r[1] !== undefined).map(
      ([k, v, title]) => el("tr", { title }, el("th", { text: k }), el("td", { text: fmt(v) }))));
  }

  function qualityBox() {
    const m = DATA.metrics || {};
    return el("div", { class: "box" }, el("h3", { text: "Quality (held-out rows)" }), kvTable([
      ["FVU", m.fvu, "sum ||x - x_hat||^2 / sum ||x - mean(x)||^2"],
      ["explained variance", m.explained_variance], ["L0", m.l0, "mean active latents per row"],
      ["dead fraction", m.dead_fraction], ["dense fraction", m.dense_fraction],
      ["eval rows", m.n_eval_rows]]));
  }

  function configBox() {
    const r = DATA.run || {}, s = DATA.settings || {};
    const box = el("div", { class: "box" }, el("h3", { text: "Config" }), kvTable([
      ["name", r.name], ["SAE", r.kind], ["d_in", r.d_in], ["d_sae", r.d_sae],
      ["top_k", r.top_k], ["steps", r.steps], ["sentences", s.n_sentences], ["rows", s.n_rows],
      ["alpha (BH)", s.alpha], ["min log2 ratio", s.min_log2_ratio],
      ["baseline", (DATA.baseline || {}).setting]]));
    if (DATA.config_yaml) {
      box.append(el("details", {}, el("summary", { text: "full config (.hydra/config.yaml)" }),
        el("pre", { text: DATA.config_yaml })));
    }
    return box;
  }

  function heatColor(v) {
    if (v === null || v === undefined) return "#eee";
    const t = Math.max(0, Math.min(1, v));
    return `rgb(${Math.round(255 - 200 * t)}, ${Math.round(255 - 130 * t)}, ${Math.round(255 - 40 * t)})`;
  }

  function heatmap() {
    const labels = DATA.labels;
    const head = el("tr", {}, el("th"), labels.map((l) => el("th", { text: l })));
    const rows = labels.map((a) => el("tr", {}, el("th", { text: a }), labels.map((b) => {
      if (a === b) {
        const c = DATA.categories[a] || {};
        return el("td", { class: "diag", title: "latents associated / specific" },
          `${fmt(c.n_features)} / ${fmt(c.n_specific)}`);
      }
      const p = DATA.pairs[[a, b].sort().join("|")] || {};
      const title = `Jaccard ${fmt(p.jaccard)} ${interval(p.jaccard_ci)}; overlap coefficient ` +
        `${fmt(p.overlap_coefficient)} ${interval(p.overlap_coefficient_ci)}; shared ` +
        `${fmt(p.n_shared)}; permutation p ${fmt(p.p_value)}`;
      return el("td", { class: "cell", style: `background:${heatColor(p.jaccard)}`, title },
        el("b", { text: fmt(p.jaccard, 2) }), el("br"), el("small", { text: interval(p.jaccard_ci) }));
    })));
    return el("div", { class: "box" }, el("h3", { text: "Label overlap: Jaccard of associated sets [interval]" }),
      el("table", { class: "heatmap", id: "heatmap" }, head, rows),
      el("p", { class: "note", text: "Diagonal: associated / specific latents. Hover a cell for the overlap coefficient and p-value." }));
  }

  function sortableTable(columns, rows, rowAttrs) {
    // columns: [[title, index, defaultDescending]]; rows: arrays
    const table = el("table", { class: "sortable" });
    const body = el("tbody");
    let state = { col: null, desc: false };
    function draw() {
      body.replaceChildren(...rows.map((r) => el("tr", rowAttrs(r),
        columns.map(([, i, , digits]) => el("td", { text: fmt(r[i], digits) })))));
    }
    const head = el("tr", {}, columns.map(([title, i, desc]) => {
      const th = el("th", { text: title, title: "sort", "data-col": i });
      th.addEventListener("click", () => {
        state = { col: i, desc: state.col === i ? !state.desc : desc };
        rows.sort((x, y) => {
          const a = x[i], b = y[i];
          if (a === null || a === undefined) return 1;
          if (b === null || b === undefined) return -1;
          return state.desc ? b - a : a - b;
        });
        table.querySelectorAll("th").forEach((h) => h.removeAttribute("data-sorted"));
        th.setAttribute("data-sorted", state.desc ? "desc" : "asc");
        draw();
      });
      return th;
    }));
    draw();
    table.append(el("thead", {}, head), body);
    return table;
  }

  function specificTables() {
    const box = el("div", { class: "box wide" }, el("h3", { text: "Label-specific latents" }),
      el("p", { class: "note", text: "Associated with this label and no other. Click a column to sort, a row to open its card." }));
    const grid = el("div", { class: "tables" });
    for (const lab of DATA.labels) {
      const rows = (DATA.specific[lab] || []).map((r) => r.slice());
      const cols = [["latent", 0, false], ["effect (log2 ratio)", 1, true, 2], ["q", 2, false],
        ["density", 3, true], ["rate", 4, true, 2]];
      grid.append(el("div", { class: "spec", "data-label": lab },
        el("h4", { text: `${lab} (${rows.length})` }),
        rows.length ? sortableTable(cols, rows, (r) => ({ "data-latent": r[0], class: "link" }))
          : el("p", { class: "note", text: "none" })));
    }
    box.append(grid);
    return box;
  }

  function figuresBox() {
    const figs = Object.entries(DATA.figures || {});
    if (!figs.length) return null;
    return el("details", { class: "box wide" }, el("summary", { text: `Figures (${figs.length})` }),
      figs.map(([name, b64]) => el("figure", {}, el("img", { src: "data:image/png;base64," + b64, alt: name, loading: "lazy" }),
        el("figcaption", { text: name }))));
  }

  // ----------------------------------------------------------------- cards
  const cardIds = (DATA.cards || []).map((c) => c[0]);
  const cardWhy = new Map(DATA.cards || []);
  let current = -1;

  function cardList() {
    const list = el("ol", { id: "card-list", tabindex: "0" });
    for (const [id, why] of DATA.cards || []) {
      list.append(el("li", { "data-latent": id, class: "link", id: "item-" + id },
        el("b", { text: "#" + id }), " ", el("span", { class: "why", text: why.join("; ") })));
    }
    return list;
  }

  function rateBar(rate, ci) {
    const pct = (v) => `${Math.max(0, Math.min(100, 100 * v))}%`;
    const bar = el("div", { class: "bar" }, el("div", { class: "fill", style: `width:${pct(rate || 0)}` }));
    if (ci) bar.append(el("div", { class: "ci", style: `left:${pct(ci[0])};width:calc(${pct(ci[1])} - ${pct(ci[0])})` }));
    return bar;
  }

  function firingTable(rec) {
    const head = el("tr", {}, ["label", "firing rate [95% CI]", "", "baseline", "log2 ratio", "q", "stability"]
      .map((t) => el("th", { text: t })));
    const rows = DATA.labels.map((lab) => el("tr", { class: (rec.associated || []).includes(lab) ? "assoc" : "" },
      el("th", { text: lab }),
      el("td", { text: `${fmt((rec.rate || {})[lab], 3)} ${interval((rec.rate_ci || {})[lab])}` }),
      el("td", {}, rateBar((rec.rate || {})[lab], (rec.rate_ci || {})[lab])),
      el("td", { text: fmt((rec.baseline_rate || {})[lab], 3) }),
      el("td", { text: fmt((rec.log2_ratio || {})[lab], 2) }),
      el("td", { text: fmt((rec.q || {})[lab]) }),
      el("td", { text: fmt((rec.stability || {})[lab], 2) })));
    return el("table", { class: "firing" }, head, rows);
  }

  function histogram(rec) {
    const h = rec.act_hist;
    if (!h || !h.counts || !h.counts.length) return el("p", { class: "note", text: "no histogram recorded" });
    const W = 360, H = 90, n = h.counts.length, top = Math.max(1, ...h.counts.map((c) => Math.log10(1 + c)));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H + 14}`);
    svg.setAttribute("class", "hist");
    h.counts.forEach((c, i) => {
      const r = document.createElementNS(svg.namespaceURI, "rect");
      const hh = (H * Math.log10(1 + c)) / top;
      r.setAttribute("x", (i * W) / n + 1); r.setAttribute("width", W / n - 2);
      r.setAttribute("y", H - hh); r.setAttribute("height", hh);
      const t = document.createElementNS(svg.namespaceURI, "title");
      t.textContent = `${fmt((i * h.max) / n, 3)}–${fmt(((i + 1) * h.max) / n, 3)}: ${c}`;
      r.append(t); svg.append(r);
    });
    if (rec.threshold && h.max) {
      const x = (W * rec.threshold) / h.max;
      const l = document.createElementNS(svg.namespaceURI, "line");
      for (const [k, v] of [["x1", x], ["x2", x], ["y1", 0], ["y2", H]]) l.setAttribute(k, v);
      l.setAttribute("class", "thr"); svg.append(l);
    }
    const lab = document.createElementNS(svg.namespaceURI, "text");
    lab.setAttribute("x", 0); lab.setAttribute("y", H + 12);
    lab.textContent = `0 … ${fmt(h.max, 3)} (log counts; line: firing threshold ${fmt(rec.threshold, 3)})`;
    svg.append(lab);
    return svg;
  }

  function tokenSpans(ex, maxAct) {
    const acts = ex.token_acts || [];
    const toks = ex.tokens || acts.map((_, i) => "#" + i);
    return el("div", { class: "tokens" }, toks.map((t, i) => {
      const v = acts[i] || 0;
      const a = maxAct > 0 ? Math.min(1, v / maxAct) : 0;
      return el("span", {
        class: "tok" + (i === ex.token_position ? " peak" : ""), "data-act": v,
        title: `${t}: ${fmt(v, 4)}`, style: v > 0 ? `background:rgba(230,85,13,${(0.1 + 0.9 * a).toFixed(3)})` : null,
      }, t);
    }));
  }

  function examples(rec) {
    const exs = rec.examples || [];
    if (!exs.length) return el("p", { class: "note", text: "no examples: the latent never fired" });
    const maxAct = Math.max(...exs.map((e) => e.activation || 0), (rec.act_hist || {}).max || 0);
    return el("ol", { class: "examples" }, exs.map((ex) => el("li", {},
      el("div", { class: "meta" }, el("span", { class: "lab", text: ex.label }), ` ${ex.split} · peak ${fmt(ex.activation, 3)}` +
        (ex.token ? ` on “${ex.token}”` : ` at token #${ex.token_position}`) +
        (ex.sentence_id !== undefined && ex.sentence_id !== null ? ` · sentence ${ex.sentence_id}` : "")),
      ex.token_acts ? tokenSpans(ex, maxAct) : el("div", { class: "text", text: ex.text || "(no text)" }),
      ex.token_acts && !ex.tokens && ex.text ? el("div", { class: "text", text: ex.text }) : null)));
  }

  function renderCard(rec, id) {
    const card = el("article", { class: "card", id: "card", "data-card": id });
    if (!rec) {
      card.append(el("h2", { text: `Latent ${id}` }), el("p", { text: "no such latent in this run" }));
      return card;
    }
    const badges = el("div", { class: "badges" });
    if (rec.specific_to) badges.append(el("span", { class: "badge b-spec", text: "specific: " + rec.specific_to }));
    else (rec.associated || []).forEach((l) => badges.append(el("span", { class: "badge b-assoc", text: "associated: " + l })));
    (rec.flags || []).forEach((f) => badges.append(el("span", { class: "badge b-flag", text: typeof f === "string" ? f : JSON.stringify(f) })));
    if (!rec.listed) badges.append(el("span", { class: "badge", text: "not in the card list (opened by id)" }));
    card.append(el("h2", { text: `Latent ${id}` }), badges,
      el("p", { class: "note", text: (rec.listed || []).join("; ") }),
      kvTable([["density", rec.density, "share of rows with a non-zero activation"],
        ["fire density", rec.fire_density, "share of rows above the firing threshold"],
        ["threshold", rec.threshold]]),
      el("h3", { text: "Firing rate per label (train sentences)" }), firingTable(rec),
      el("h3", { text: "Activation histogram" }), histogram(rec),
      el("h3", { text: "Top-activating sentences" }), examples(rec),
      el("h3", { text: "Nearest latents (decoder cosine)" }),
      rec.neighbors ? el("ul", { class: "neighbors" }, rec.neighbors.map(([j, c]) =>
        el("li", { class: "link", "data-latent": j }, `#${j} `, el("small", { text: `cos ${fmt(c, 3)}` }))))
        : el("p", { class: "note", text: "computed for listed cards only" }));
    return card;
  }

  let renderToken = 0;
  async function openLatent(id, scroll) {
    const token = ++renderToken;
    const idx = cardIds.indexOf(id);
    if (idx >= 0) current = idx;
    document.querySelectorAll("#card-list li.active").forEach((li) => li.classList.remove("active"));
    const item = document.getElementById("item-" + id);
    if (item) { item.classList.add("active"); item.scrollIntoView({ block: "nearest" }); }
    const rec = await getLatent(id);
    if (token !== renderToken) return;
    document.getElementById("card").replaceWith(renderCard(rec, id));
    if (history.replaceState) history.replaceState(null, "", "#latent-" + id);
    if (scroll !== false) document.getElementById("card").scrollIntoView({ block: "start" });
  }

  function step(delta) {
    if (!cardIds.length) return;
    current = current < 0 ? (delta > 0 ? 0 : cardIds.length - 1)
      : Math.max(0, Math.min(cardIds.length - 1, current + delta));
    openLatent(cardIds[current]);
  }

  // ----------------------------------------------------------------- search
  async function search(q) {
    const out = document.getElementById("search-results");
    q = q.trim();
    if (!q) { out.replaceChildren(); return; }
    const items = [];
    const num = q.replace(/^#/, "");
    if (/^\d+$/.test(num) && Number(num) < DATA.n_latents) {
      items.push(el("li", { class: "link", "data-latent": Number(num) }, `latent #${num}`));
    }
    const index = await getTokenIndex();
    const key = normToken(q);
    let toks = key in index ? [key] : [];
    if (!toks.length && key) toks = Object.keys(index).filter((t) => t.startsWith(key)).slice(0, 8);
    for (const t of toks) {
      items.push(el("li", { class: "head", text: `peak on “${t}”: ${index[t].length} latent(s)` }));
      for (const [j, n, a] of index[t].slice(0, 20)) {
        const why = cardWhy.has(j) ? ` · ${cardWhy.get(j).join("; ")}` : "";
        items.push(el("li", { class: "link", "data-latent": j }, `#${j} `, el("small", { text: `${n} top example(s), max ${fmt(a, 3)}${why}` })));
      }
    }
    if (!items.length) items.push(el("li", { class: "note", text: "no latent id or peak token matches" }));
    out.replaceChildren(...items);
  }

  // ----------------------------------------------------------------- pages
  function runPage() {
    const r = DATA.run || {};
    const header = el("header", {}, el("h1", { text: `${r.name || "run"} — feature browser` }),
      el("div", { class: "search" }, el("input", { id: "search", type: "search", placeholder: "latent id or token (/)", autocomplete: "off" }),
        el("ul", { id: "search-results" })));
    const warn = (DATA.warnings || []).length ? el("ul", { class: "warnings" }, DATA.warnings.map((w) => el("li", { text: w }))) : null;
    const inc = DATA.incomplete ? el("p", { class: "warnings", text: "INCOMPLETE run: training stopped early." }) : null;
    const nDens = (DATA.cards || []).filter((c) => c[1].some((w) => w.startsWith("density"))).length;
    const overview = el("section", { id: "overview" }, inc, el("div", { class: "row" }, qualityBox(), configBox(), heatmap()),
      warn, specificTables(), figuresBox());
    const latents = el("section", { id: "latents" }, el("h2", { text: "Latent cards" }),
      el("p", { class: "note", text: `Listed: every associated latent and the ${DATA.top_by_density} densest live latents (${nDens} listed for density); ` +
        `${(DATA.cards || []).length} of ${DATA.n_latents} latents. Any latent opens by id from the search box. Keys: j/→ next, k/← previous, / search.` }),
      el("div", { class: "cards" }, cardList(), el("article", { id: "card", class: "card empty", text: "Click a latent to open its card." })));
    app.replaceChildren(header, overview, latents);
  }

  function sweepPage() {
    const header = el("header", {}, el("h1", { text: DATA.title || "sweep" }));
    const cols = DATA.columns || [];
    const table = el("table", { class: "sweep" }, el("tr", {}, el("th", { text: "page" }), cols.map((c) => el("th", { text: c }))),
      (DATA.rows || []).map((r) => el("tr", {}, el("td", {}, r._page ? el("a", { href: r._page, text: "report.html" }) : "–"),
        cols.map((c) => el("td", { text: fmt(r[c]) })))));
    const figs = (DATA.figures || []).map(([name, b64]) => el("figure", {},
      el("img", { src: "data:image/png;base64," + b64, alt: name }), el("figcaption", { text: name })));
    app.replaceChildren(header, el("section", { class: "box wide sweep-table" }, table), el("section", {}, figs));
  }

  function bindEvents() {
    document.addEventListener("click", (e) => {
      const t = e.target.closest("[data-latent]");
      if (t) { e.preventDefault(); openLatent(Number(t.dataset.latent)); }
    });
    const input = document.getElementById("search");
    let timer = null;
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search(input.value), 120); });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { clearTimeout(timer); search(input.value); }
      if (e.key === "Escape") input.blur();
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "j" || e.key === "ArrowRight") { e.preventDefault(); step(1); }
      else if (e.key === "k" || e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
      else if (e.key === "/") { e.preventDefault(); input.focus(); }
    });
  }

  function ready() {
    window.saeLoadMs = performance.now();
    document.body.dataset.ready = "1";
  }

  if (KIND === "sweep") {
    sweepPage();
    ready();
  } else {
    runPage();
    bindEvents();
    const m = /^#latent-(\d+)$/.exec(location.hash);
    if (m) openLatent(Number(m[1]), false);
    ready();
  }
})();
