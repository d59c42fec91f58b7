"""The inline CSS and JavaScript of the HTML report (no CDN, no network: everything is in the one file).

The script drives the per-example explorer and, when the page is opened with ``#selftest`` in its URL, runs a
self-test after load whose JSON result is written into ``<pre id="selftest">``: the natural size of every
figure image, and for every pair (up to 200) and every filter the example ids the explorer lists after the
filter was changed through its ``<select>``. ``tests/test_report_html.py`` reads it with ``chromium
--dump-dom``.
"""

from __future__ import annotations

CSS = """
:root { --blue:#0072B2; --orange:#E69F00; --green:#009E73; --red:#D55E00; --grey:#666; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222; }
header { background: #f4f6f8; border-bottom: 1px solid #dde; padding: 16px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
nav { font-size: 13px; } nav a { margin-right: 12px; color: var(--blue); text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1300px; }
section { border-bottom: 1px solid #eee; padding-bottom: 12px; }
h2 { font-size: 18px; margin-top: 26px; }
.warn { background: #fff4e0; border-left: 4px solid var(--orange); padding: 6px 10px; margin: 6px 0; }
.finding { background: #e8f3fb; border-left: 4px solid var(--blue); padding: 6px 10px; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 12.5px; }
th, td { border: 1px solid #dde; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; }
td a.ref { color: inherit; text-decoration: none; border-bottom: 1px dotted var(--blue); }
td a.ref sup { color: var(--blue); font-size: 9px; margin-left: 2px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
.note { color: var(--grey); font-size: 12px; margin: 2px 0; }
figure { margin: 14px 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
details > summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
details.ids { display: inline; margin-left: 6px; } details.ids > summary { display: inline; font-weight: normal;
  color: var(--blue); font-size: 11.5px; } details.ids[open] { display: block; }
figcaption { color: var(--grey); font-size: 12.5px; max-width: 900px; }
#explorer .controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin: 8px 0; }
#explorer label { font-size: 12px; color: var(--grey); display: flex; flex-direction: column; }
#explorer select, #explorer input { font-size: 13px; padding: 3px; }
#ex-rows td.wrong { color: var(--red); } #ex-rows td.right { color: var(--green); }
#ex-rows td.text { max-width: 380px; } #ex-rows audio { width: 210px; height: 30px; }
.small { font-size: 11.5px; color: var(--grey); }
#sources li { margin: 3px 0; font-size: 12.5px; } #sources li:target { background: #fff4b0; }
"""

JS = r"""
(function () {
  const DATA = JSON.parse(document.getElementById('explorer-data').textContent);
  const MAX_ROWS = 500;
  const $ = (id) => document.getElementById(id);
  const FILTERS = {
    shared: (ca, cb, la, lb) => !ca && !cb,
    shared_same: (ca, cb, la, lb) => !ca && !cb && la === lb,
    disagree: (ca, cb, la, lb) => la !== lb,
    a_only: (ca, cb) => !ca && cb,
    b_only: (ca, cb) => ca && !cb,
    all: () => true,
  };
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  }
  function option(sel, value, text) { const o = document.createElement('option'); o.value = value; o.textContent = text; sel.appendChild(o); }
  function pairKeys() { return [...new Set(DATA.pairs.map((p) => p[0] + '\u0000' + p[1]))]; }
  function fillPairs() {
    const sel = $('ex-pair'); sel.innerHTML = '';
    pairKeys().forEach((k) => { const [a, b] = k.split('\u0000'); option(sel, k, a + '  vs  ' + b); });
  }
  function fillGroups() {
    const [a, b] = $('ex-pair').value.split('\u0000');
    const tasks = [...new Set(DATA.pairs.filter((p) => p[0] === a && p[1] === b).map((p) => p[2]))];
    const tsel = $('ex-task'); const keepT = tsel.value; tsel.innerHTML = '';
    tasks.forEach((t) => option(tsel, t, t)); if (tasks.includes(keepT)) tsel.value = keepT;
    const conds = DATA.pairs.filter((p) => p[0] === a && p[1] === b && p[2] === tsel.value).map((p) => p[3]);
    const csel = $('ex-cond'); const keepC = csel.value; csel.innerHTML = '';
    conds.forEach((c) => option(csel, c, c)); if (conds.includes(keepC)) csel.value = keepC;
  }
  function render() {
    const [a, b] = $('ex-pair').value.split('\u0000');
    const g = DATA.groups.find((x) => x.task === $('ex-task').value && x.condition === $('ex-cond').value);
    const body = $('ex-rows').querySelector('tbody'); body.innerHTML = '';
    $('ex-a').textContent = a || 'a'; $('ex-b').textContent = b || 'b';
    if (!g || !(a in g.labels) || !(b in g.labels)) { $('ex-count').textContent = 'no data'; return; }
    const test = FILTERS[$('ex-filter').value];
    const q = $('ex-search').value.trim().toLowerCase();
    const rows = [];
    for (let i = 0; i < g.ids.length; i++) {
      const ca = g.correct[a][i] === 1, cb = g.correct[b][i] === 1, la = g.labels[a][i], lb = g.labels[b][i];
      if (!test(ca, cb, la, lb)) continue;
      if (q) {
        const hay = [g.ids[i], g.text[i], g.gold[i], la, lb, g.outputs[a][i], g.outputs[b][i],
          ...Object.values(g.transcripts).map((t) => t[i])].join(' ').toLowerCase();
        if (!hay.includes(q)) continue;
      }
      rows.push(i);
    }
    $('ex-count').textContent = rows.length + ' example(s)' + (rows.length > MAX_ROWS ? ', first ' + MAX_ROWS + ' shown' : '');
    for (const i of rows.slice(0, MAX_ROWS)) {
      const tr = document.createElement('tr'); tr.dataset.id = g.ids[i];
      const own = Object.keys(g.transcripts).filter((s) => s === a || s === b);
      const shown = own.length ? own : Object.keys(g.transcripts);
      const trs = shown.map((s) => [s, g.transcripts[s]]).filter(([s, t]) => t[i] != null)
        .map(([s, t]) => '<div><span class="small">' + esc(s) + ':</span> ' + esc(t[i]) + '</div>').join('');
      let audio = '<span class="small">no audio</span>';
      const c = g.clip[i];
      if (c >= 0) {
        const clip = DATA.clips[c];
        audio = '<audio controls preload="none" src="' + clip.uri + '"></audio>' +
          (clip.as_heard ? '' : '<div class="small">clean version (the noisy one is not renderable here)</div>');
      } else if (g.audio_path[i]) {
        audio = '<span class="small">not embedded (cap ' + DATA.max_clips + '): ' + esc(g.audio_path[i]) + '</span>';
      }
      const cls = (ok) => ok ? 'right' : 'wrong';
      tr.innerHTML = '<td>' + esc(g.ids[i]) + '</td><td class="text">' + esc(g.text[i] == null ? '(text unavailable)' : g.text[i]) +
        '</td><td>' + esc(g.gold[i]) + '</td><td class="' + cls(g.correct[a][i] === 1) + '" title="' + esc(g.outputs[a][i]) + '">' + esc(g.labels[a][i]) +
        '</td><td class="' + cls(g.correct[b][i] === 1) + '" title="' + esc(g.outputs[b][i]) + '">' + esc(g.labels[b][i]) +
        '</td><td class="text">' + (trs || '<span class="small">–</span>') + '</td><td>' + audio + '</td>';
      body.appendChild(tr);
    }
  }
  function init() {
    if (!DATA.pairs.length) { $('ex-count').textContent = 'no pairs to explore'; return; }
    fillPairs(); fillGroups(); render();
    $('ex-pair').addEventListener('change', () => { fillGroups(); render(); });
    $('ex-task').addEventListener('change', () => { fillGroups(); render(); });
    ['ex-cond', 'ex-filter'].forEach((id) => $(id).addEventListener('change', render));
    $('ex-search').addEventListener('input', render);
  }
  function setSelect(id, value) { const s = $(id); s.value = value; s.dispatchEvent(new Event('change')); }
  function selftest() {
    const out = {figures: [], explorer: [], errors: []};
    document.querySelectorAll('img.figure').forEach((img) => out.figures.push(
      {id: img.id, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
    try {
      for (const p of DATA.pairs.slice(0, 200)) {
        setSelect('ex-pair', p[0] + '\u0000' + p[1]); setSelect('ex-task', p[2]); setSelect('ex-cond', p[3]);
        const rec = {a: p[0], b: p[1], task: p[2], condition: p[3], ids: {}};
        for (const f of Object.keys(FILTERS)) {
          setSelect('ex-filter', f);
          rec.ids[f] = [...$('ex-rows').querySelectorAll('tbody tr')].map((tr) => tr.dataset.id);
        }
        out.explorer.push(rec);
      }
    } catch (e) { out.errors.push(String(e)); }
    $('selftest').textContent = JSON.stringify(out);
  }
  init();
  window.addEventListener('load', () => { if (location.hash === '#selftest') selftest(); });
})();
"""
