// deltapipe docs: renders the catalog embedded as JSON (#dp-data); pages are hash routes, so the file works
// from file:// with no server and no network: #/ (project), #/table/ID[/COLUMN], #/run/ID, #/runs.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('dp-data').textContent);
  var T = {};
  D.tables.forEach(function (t) { T[t.id] = t; });
  var RUNS = {};
  D.runs.forEach(function (r) { RUNS[r.id] = r; });
  var SEP = '\u0001';
  function ck(t, c) { return t + SEP + c; }
  function split(k) { var i = k.indexOf(SEP); return [k.slice(0, i), k.slice(i + 1)]; }
  var UP = {}, DOWN = {};
  D.column_edges.forEach(function (e) {
    var s = ck(e[0], e[1]), d = ck(e[2], e[3]);
    (UP[d] = UP[d] || []).push(s);
    (DOWN[s] = DOWN[s] || []).push(d);
  });
  var main = document.getElementById('main'), nav = document.getElementById('nav');

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs) {
    var el = document.createElement(tag);
    for (var k in (attrs || {})) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k === 'class') el.className = v;
      else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, c) {   // append c (a node, text, or an array of them) to an element, or push it to an array
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(el)) { el.push(c); return; }
    if (Array.isArray(c)) { c.forEach(function (x) { add(el, x); }); return; }
    el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
  function tableHref(id, col) {
    return '#/table/' + encodeURIComponent(id) + (col !== undefined ? '/' + encodeURIComponent(col) : '');
  }
  function label(id) { var t = T[id]; return t ? (t.kind === 'external' ? id : t.name) : id; }
  function tlink(id, col) {
    return h('a', {href: tableHref(id, col), title: id + (col !== undefined ? '.' + col : '')},
             label(id) + (col !== undefined ? '.' + col : ''));
  }
  function runLink(id) { return h('a', {href: '#/run/' + id}, 'run ' + id); }
  function fmtN(n) { return n === null || n === undefined ? '' : Number(n).toLocaleString('en'); }
  function secs(s) { return s === null || s === undefined ? '' : s < 10 ? s.toFixed(3) + ' s' : s.toFixed(1) + ' s'; }
  function ago(iso) {
    if (!iso) return null;
    var s = (Date.now() - Date.parse(iso)) / 1000;
    if (isNaN(s)) return null;
    if (s < 0) s = 0;
    if (s < 90) return Math.round(s) + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    if (s < 129600) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }
  function when(iso) {
    if (!iso) return h('span', {class: 'muted'}, 'never');
    var d = new Date(iso);
    return h('span', {title: d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC'}, ago(iso));
  }
  function kindBadge(t) {
    if (t.kind === 'model') {
      var inc = t.refresh && t.refresh.incremental;
      return h('span', {class: 'badge ' + (inc ? 'inc' : 'full')}, inc ? 'model · incremental' : 'model · full refresh');
    }
    return h('span', {class: 'badge ' + t.kind}, t.kind);
  }
  function statusBadge(s) { return h('span', {class: 'badge ' + s}, s); }
  function section(title, body, id) { return [h('h2', {id: id}, title), body]; }
  function tbl(head, rows, numeric) {
    numeric = numeric || [];
    return h('div', {class: 'scroll'}, h('table', {class: 't'},
      h('thead', null, h('tr', null, head.map(function (x, i) { return h('th', {class: numeric.indexOf(i) >= 0 ? 'n' : null}, x); }))),
      h('tbody', null, rows.map(function (r) {
        var tr = h('tr', {class: r.cls || null});
        (r.cells || r).forEach(function (c, i) { tr.appendChild(h('td', {class: numeric.indexOf(i) >= 0 ? 'n' : null}, c)); });
        return tr;
      }))));
  }

  // ------------------------------------------------------------------ graphs (layered, left to right)
  function layout(ids, edges) {
    var ups = {}, downs = {};
    ids.forEach(function (n) { ups[n] = []; downs[n] = []; });
    edges.forEach(function (e) { if (ups[e[1]] && downs[e[0]] && e[0] !== e[1]) { ups[e[1]].push(e[0]); downs[e[0]].push(e[1]); } });
    var layer = {}, busy = {};
    function depth(n) {
      if (n in layer) return layer[n];
      if (busy[n]) return 0;
      busy[n] = 1;
      var d = 0;
      ups[n].forEach(function (u) { d = Math.max(d, depth(u) + 1); });
      layer[n] = d;
      return d;
    }
    ids.forEach(depth);
    var cols = [];
    ids.slice().sort().forEach(function (n) { (cols[layer[n]] = cols[layer[n]] || []).push(n); });
    for (var i = 0; i < cols.length; i++) cols[i] = cols[i] || [];
    var pos = {};
    function index() { cols.forEach(function (c) { c.forEach(function (n, j) { pos[n] = j; }); }); }
    index();
    for (var it = 0; it < 8; it++) {   // barycentre sweeps, down then up, to untangle edges
      var downward = it % 2 === 0;
      for (var k = 0; k < cols.length; k++) {
        var li = downward ? k : cols.length - 1 - k;
        var bary = {};
        cols[li].forEach(function (n) {
          var nb = downward ? ups[n] : downs[n];
          bary[n] = nb.length ? nb.reduce(function (a, m) { return a + pos[m]; }, 0) / nb.length : pos[n];
        });
        cols[li].sort(function (a, b) { return bary[a] - bary[b] || pos[a] - pos[b]; });
        cols[li].forEach(function (n, j) { pos[n] = j; });
      }
    }
    return {cols: cols, layer: layer};
  }
  var SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs) {
    var el = document.createElementNS(SVGNS, tag);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    for (var i = 2; i < arguments.length; i++) if (arguments[i]) el.appendChild(arguments[i]);
    return el;
  }
  // nodes: [{id, label, fill, text, href, title, cur, dash}], edges: [[from, to, hot]]
  function graph(nodes, edges, opt) {
    opt = opt || {};
    var longest = nodes.reduce(function (a, n) { return Math.max(a, n.label.length); }, 0);
    var W = Math.max(120, Math.min(opt.width || 260, longest * 7 + 24)), H = 30, GX = opt.gapx || 64, GY = 14;
    var fit = Math.floor((W - 14) / 7);
    var by = {};
    nodes.forEach(function (n) { by[n.id] = n; });
    var L = layout(nodes.map(function (n) { return n.id; }), edges);
    var tallest = Math.max.apply(null, L.cols.map(function (c) { return c.length; }).concat([1]));
    var xy = {};
    L.cols.forEach(function (c, i) {
      var off = (tallest - c.length) * (H + GY) / 2;
      c.forEach(function (n, j) { xy[n] = [10 + i * (W + GX), 10 + off + j * (H + GY)]; });
    });
    var width = 20 + L.cols.length * (W + GX) - GX, height = 20 + tallest * (H + GY) - GY;
    var svg = s('svg', {class: 'g', width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, role: 'img'});
    svg.appendChild(s('defs', {}, s('marker', {id: 'arr' + (opt.key || ''), viewBox: '0 0 10 10', refX: 10, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse'}, s('path', {d: 'M0 0L10 5L0 10z', fill: '#8c959f'}))));
    edges.forEach(function (e) {
      var a = xy[e[0]], b = xy[e[1]];
      if (!a || !b) return;
      var x1 = a[0] + W, y1 = a[1] + H / 2, x2 = b[0], y2 = b[1] + H / 2, mx = (x1 + x2) / 2;
      svg.appendChild(s('path', {class: 'e' + (e[2] ? ' hot' : ''), 'data-from': e[0], 'data-to': e[1],
        d: 'M' + x1 + ' ' + y1 + 'C' + mx + ' ' + y1 + ',' + mx + ' ' + y2 + ',' + (x2 - 1) + ' ' + y2,
        'marker-end': 'url(#arr' + (opt.key || '') + ')'}));
    });
    nodes.forEach(function (n) {
      var p = xy[n.id];
      var txt = n.label.length > fit ? n.label.slice(0, fit - 1) + '\u2026' : n.label;
      var g = s('g', {class: 'node' + (n.cur ? ' cur' : ''), 'data-id': n.id},
        s('title', {}, document.createTextNode(n.title || n.label)),
        s('rect', {x: p[0], y: p[1], width: W, height: H, rx: 6, fill: n.fill, 'stroke-dasharray': n.dash ? '4 3' : 'none'}));
      var t = s('text', {x: p[0] + W / 2, y: p[1] + H / 2 + 4, 'text-anchor': 'middle', fill: n.text || '#fff'});
      t.textContent = txt;
      g.appendChild(t);
      if (n.href) {
        var a = s('a', {href: n.href});
        a.appendChild(g);
        svg.appendChild(a);
      } else svg.appendChild(g);
    });
    return h('div', {class: 'scroll card'}, svg);
  }
  function tableNode(id, cur) {
    var t = T[id] || {kind: 'external', name: id};
    var fill = t.kind === 'dataset' ? '#2f7ed8' : t.kind === 'model' ? (t.refresh && t.refresh.incremental ? '#2ca02c' : '#e8890c') : '#ffffff';
    return {id: id, label: label(id), fill: fill, text: t.kind === 'external' ? '#24292f' : '#fff', href: tableHref(id),
            title: id + ' (' + t.kind + (t.kind === 'model' ? ', ' + (t.refresh || {}).summary : '') + ')',
            dash: t.kind === 'external', cur: cur};
  }
  function legend() {
    return h('div', {class: 'legend'}, [['#2f7ed8', 'dataset'], ['#2ca02c', 'model, incremental'], ['#e8890c', 'model, full refresh'],
      ['#ffffff', 'external table']].map(function (x) { return h('span', null, h('i', {style: 'background:' + x[0]}), x[1]); }));
  }
  function links(ids) {
    if (!ids.length) return 'none';
    return ids.map(function (u, i) { return [i ? ', ' : '', tlink(u)]; });
  }
  function tableEdges(ids) {
    var set = {}, out = [];
    ids.forEach(function (i) { set[i] = 1; });
    ids.forEach(function (i) { (T[i] ? T[i].upstream : []).forEach(function (u) { if (set[u]) out.push([u, i]); }); });
    return out;
  }
  function closure(start, next) {   // {node: hops} reachable from start by next(node)
    var seen = {}, frontier = [start], d = 0;
    while (frontier.length) {
      d++;
      var nxt = [];
      frontier.forEach(function (n) {
        (next(n) || []).forEach(function (m) { if (!(m in seen) && m !== start) { seen[m] = d; nxt.push(m); } });
      });
      frontier = nxt;
    }
    return seen;
  }

  // ------------------------------------------------------------------ navigation and search
  function buildNav(cur) {
    nav.textContent = '';
    var groups = [['Datasets', 'dataset'], ['Models', 'model'], ['External tables', 'external']];
    add(nav, h('a', {href: '#/', class: cur === '#/' ? 'cur' : null}, 'Project'));
    add(nav, h('a', {href: '#/runs', class: cur === '#/runs' ? 'cur' : null}, 'Runs'));
    groups.forEach(function (g) {
      var ts = D.tables.filter(function (t) { return t.kind === g[1]; });
      if (!ts.length) return;
      add(nav, h('h3', null, g[0] + ' (' + ts.length + ')'));
      ts.forEach(function (t) {
        add(nav, h('a', {href: tableHref(t.id), title: t.id, class: cur === t.id ? 'cur' : null}, label(t.id)));
      });
    });
  }
  var INDEX = [];
  D.tables.forEach(function (t) {
    INDEX.push({text: (t.name + ' ' + t.id).toLowerCase(), label: label(t.id), kind: t.kind, href: tableHref(t.id), name: t.name.toLowerCase()});
    t.columns.forEach(function (c) {
      INDEX.push({text: (label(t.id) + '.' + c.name).toLowerCase(), label: label(t.id) + '.' + c.name, kind: 'column' + (c.type ? ' · ' + c.type : ''),
                  href: tableHref(t.id, c.name), name: c.name.toLowerCase()});
    });
  });
  var search = document.getElementById('search'), results = document.getElementById('results');
  function find(q) {
    var words = q.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    var hits = [];
    INDEX.forEach(function (e) {
      if (!words.every(function (w) { return e.text.indexOf(w) >= 0; })) return;
      var w = words[words.length - 1];
      var score = e.name === w ? 0 : e.name.indexOf(w) === 0 ? 1 : 2;
      hits.push([score, e.label.length, e]);
    });
    hits.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || (a[2].label < b[2].label ? -1 : 1); });
    return hits.slice(0, 40).map(function (x) { return x[2]; });
  }
  var selIdx = 0;
  function showResults() {
    var hits = find(search.value);
    results.textContent = '';
    selIdx = 0;
    if (!search.value.trim()) { results.classList.remove('open'); return; }
    if (!hits.length) add(results, h('div', {class: 'none'}, 'no table or column matches'));
    hits.forEach(function (e, i) {
      add(results, h('a', {href: e.href, class: i === 0 ? 'sel' : null, role: 'option'}, h('span', {class: 'k'}, e.kind), e.label));
    });
    results.classList.add('open');
  }
  search.addEventListener('input', showResults);
  search.addEventListener('focus', showResults);
  search.addEventListener('keydown', function (ev) {
    var links = results.querySelectorAll('a');
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      if (!links.length) return;
      links[selIdx].classList.remove('sel');
      selIdx = (selIdx + (ev.key === 'ArrowDown' ? 1 : links.length - 1)) % links.length;
      links[selIdx].classList.add('sel');
      links[selIdx].scrollIntoView({block: 'nearest'});
    } else if (ev.key === 'Enter' && links.length) {
      location.hash = links[selIdx].getAttribute('href');
      closeSearch();
    } else if (ev.key === 'Escape') closeSearch();
  });
  results.addEventListener('click', function () { closeSearch(); });
  document.addEventListener('click', function (ev) {
    if (!document.getElementById('searchbox').contains(ev.target)) results.classList.remove('open');
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === '/' && document.activeElement !== search) { ev.preventDefault(); search.focus(); }
  });
  function closeSearch() { results.classList.remove('open'); search.blur(); }
  document.getElementById('menu').addEventListener('click', function () { document.body.classList.toggle('nav-open'); });

  // ------------------------------------------------------------------ pages
  function project() {
    var models = D.tables.filter(function (t) { return t.kind === 'model'; });
    var inc = models.filter(function (t) { return t.refresh && t.refresh.incremental; }).length;
    var ncols = D.tables.reduce(function (a, t) { return a + t.columns.length; }, 0);
    var last = D.runs[0];
    var names = D.pipelines.map(function (p) { return p.name; });
    var ids = D.tables.map(function (t) { return t.id; });
    var out = [
      h('h1', null, names.length ? 'Pipeline' + (names.length > 1 ? 's ' : ' ') + names.join(', ') : 'Project'),
      h('div', {class: 'sub'}, 'database ' + D.database + ' · ' + (D.live ? 'live from the catalog' : 'catalog read ') ,
        D.live ? null : when(D.generated_at),
        D.pipelines.map(function (p) { return [' · ', h('span', {title: p.root || ''}, p.name + ' in schema ' + p.schema)]; })),
      h('div', {class: 'grid'},
        [[D.tables.filter(function (t) { return t.kind === 'dataset'; }).length, 'datasets'],
         [models.length, 'models'], [inc + ' / ' + models.length, 'models incremental'], [ncols, 'columns'],
         [last ? last.status : '—', last ? 'last run (' + (ago(last.started_at) || '') + ')' : 'no run yet']].map(function (x) {
          return h('div', {class: 'card stat'}, h('b', null, String(x[0])), h('span', null, x[1]));
        })),
      section('DAG', [legend(), graph(ids.map(function (i) { return tableNode(i); }), tableEdges(ids), {key: 'dag', width: 200})], 'dag'),
      section('Tables', tbl(['table', 'kind', 'refresh', 'rows', 'last change', 'columns'], D.tables.map(function (t) {
        return [tlink(t.id), kindBadge(t), t.kind === 'model' ? t.refresh.summary : t.kind === 'dataset' ? 'loads (' + (t.mode || '') + ')' : '',
                fmtN(t.rows), t.last_change ? when(t.last_change.at) : h('span', {class: 'muted'}, '—'),
                h('div', {class: 'chips'}, t.columns.map(function (c) { return h('a', {class: 'chip', href: tableHref(t.id, c.name)}, c.name); }))];
      }), [3]), 'tables'),
      section('Recent runs', runsTable(D.runs.slice(0, 10)), 'runs')
    ];
    return out;
  }
  function runsTable(runs) {
    if (!runs.length) return h('p', {class: 'empty'}, 'No runs yet.');
    return tbl(['run', 'what', 'status', 'started', 'seconds', 'nodes', 'rows +ins ~upd -del'], runs.map(function (r) {
      var ins = 0, upd = 0, del = 0;
      r.nodes.forEach(function (n) { ins += n.inserted || 0; upd += n.updated || 0; del += n.deleted || 0; });
      return [runLink(r.id), r.kind === 'load' ? 'load ' + (r.dataset || '') : 'pipeline ' + (r.pipeline || ''), statusBadge(r.status),
              when(r.started_at), secs(r.seconds), String(r.nodes.length), '+' + fmtN(ins) + ' ~' + fmtN(upd) + ' -' + fmtN(del)];
    }), [4, 5]);
  }
  function runsPage() {
    return [h('h1', null, 'Runs'), h('div', {class: 'sub'}, 'the last ' + D.runs.length + ' runs of these pipelines and their datasets'),
            runsTable(D.runs)];
  }
  function runPage(id) {
    var r = RUNS[id];
    if (!r) return notFound('run ' + id + ' is not among the runs of this site');
    return [
      h('h1', null, 'Run ' + r.id), h('div', {class: 'sub'}, r.kind === 'load' ? 'load of dataset ' + (r.dataset || '') : 'pipeline ' + r.pipeline),
      h('div', {class: 'card'}, h('dl', {class: 'facts'},
        h('dt', null, 'status'), h('dd', null, statusBadge(r.status)),
        h('dt', null, 'trigger'), h('dd', null, r.trigger),
        h('dt', null, 'started'), h('dd', null, when(r.started_at), ' (' + (r.started_at || '').replace('T', ' ').slice(0, 19) + ')'),
        h('dt', null, 'duration'), h('dd', null, r.seconds === null ? 'not finished' : secs(r.seconds)),
        r.error ? [h('dt', null, 'error'), h('dd', {class: 'bad'}, r.error)] : null,
        h('dt', null, 'report'), h('dd', null, h('a', {href: 'runs/run-' + r.id + '.html', id: 'report-link'}, 'run report: DAG and timeline (runs/run-' + r.id + '.html)')))),
      section('Nodes', tbl(['node', 'kind', 'status', 'how', 'seconds', 'read', '+ins', '~upd', '-del', 'rejected', 'note'], r.nodes.map(function (n) {
        return [n.table ? tlink(n.table) : n.node, n.kind, statusBadge(n.status), n.strategy || '', secs(n.seconds), fmtN(n.rows_in),
                fmtN(n.inserted), fmtN(n.updated), fmtN(n.deleted), fmtN(n.rejected), n.note];
      }), [4, 5, 6, 7, 8, 9]))
    ];
  }
  function notFound(what) { return [h('h1', null, 'Not found'), h('p', null, what + '. '), h('a', {href: '#/'}, 'back to the project')]; }

  function columnLineage(t, col) {
    var key = ck(t.id, col);
    var up = closure(key, function (k) { return UP[k]; }), down = closure(key, function (k) { return DOWN[k]; });
    function list(m, dir) {
      var ks = Object.keys(m).sort(function (a, b) { return m[a] - m[b] || (a < b ? -1 : 1); });
      if (!ks.length) return h('p', {class: 'empty'}, dir === 'up' ? 'no upstream column: computed here (a constant, or a source column)' : 'no column derives from it');
      return h('ul', {class: 'plain ' + dir}, ks.map(function (k) {
        var p = split(k);
        return h('li', {'data-col': p[0] + '.' + p[1]}, tlink(p[0], p[1]), h('span', {class: 'muted'}, ' ' + m[k] + (m[k] === 1 ? ' hop' : ' hops')));
      }));
    }
    var ids = [key].concat(Object.keys(up), Object.keys(down));
    var set = {};
    ids.forEach(function (k) { set[k] = 1; });
    var edges = [];
    D.column_edges.forEach(function (e) {
      var a = ck(e[0], e[1]), b = ck(e[2], e[3]);
      if (set[a] && set[b] && ((a in up || a === key) && (b in up || b === key) || (a in down || a === key) && (b in down || b === key)))
        edges.push([a, b, b === key || a === key]);
    });
    var nodes = ids.map(function (k) {
      var p = split(k), tt = T[p[0]] || {kind: 'external'};
      var base = tableNode(p[0], k === key);
      return {id: k, label: label(p[0]) + '.' + p[1], fill: base.fill, text: base.text, dash: base.dash, cur: k === key,
              href: tableHref(p[0], p[1]), title: p[0] + '.' + p[1] + ' (' + tt.kind + ')'};
    });
    return h('section', {id: 'column-lineage', class: 'card', 'data-column': t.id + '.' + col},
      h('h2', {style: 'margin-top:0'}, 'Column ', h('code', null, label(t.id) + '.' + col)),
      h('div', {class: 'lists'},
        h('div', null, h('h3', null, 'Upstream columns (' + Object.keys(up).length + ')'), list(up, 'up')),
        h('div', null, h('h3', null, 'Downstream columns (' + Object.keys(down).length + ')'), list(down, 'down'))),
      ids.length > 1 ? graph(nodes, edges, {key: 'col', width: 300}) : null);
  }

  function tablePage(id, col) {
    var t = T[id];
    if (!t) return notFound('no table ' + id + ' in this site');
    if (col !== undefined && !t.columns.some(function (c) { return c.name === col; })) col = undefined;
    var keyset = {};
    (t.key || []).forEach(function (k) { keyset[k] = 1; });
    var out = [
      h('div', {class: 'sub'}, kindBadge(t), t.pipeline ? ' pipeline ' + t.pipeline + ' · ' : ' ', h('code', null, t.id),
        t.exists === false ? h('span', {class: 'warn'}, ' (no table in the database yet)') : null),
      h('h1', null, t.name),
      t.description ? h('p', null, t.description) : null,
      h('div', {class: 'card'}, h('dl', {class: 'facts'},
        h('dt', null, 'key'), h('dd', null, (t.key || []).length ? h('code', null, t.key.join(', ')) : h('span', {class: 'muted'}, 'none'),
          t.key_inferred ? h('span', {class: 'muted'}, ' (inferred from the query)') : null),
        t.rows !== undefined && t.rows !== null ? [h('dt', null, 'rows'), h('dd', null, fmtN(t.rows))] : null,
        t.kind === 'model' ? [h('dt', null, 'refresh'), h('dd', null, t.refresh.summary)] : null,
        t.kind === 'dataset' ? [h('dt', null, 'load mode'), h('dd', null, t.mode || '')] : null,
        t.kind === 'model' ? [h('dt', null, 'last refreshed'), h('dd', null, when(t.last_refreshed_at))] : null,
        t.kind === 'dataset' ? [h('dt', null, 'last loaded'), h('dd', null, when(t.last_loaded_at))] : null,
        h('dt', null, 'last change'), h('dd', null, t.last_change ? [when(t.last_change.at), ' in ', runLink(t.last_change.run)]
          : h('span', {class: 'muted'}, t.kind === 'external' ? 'unknown: an external table has no change log' : 'no change recorded')),
        t.file ? [h('dt', null, 'file'), h('dd', null, h('code', null, t.file))] : null))
    ];
    // columns, each with the columns it comes from; a click shows its whole lineage
    add(out, section('Columns (' + t.columns.length + ')', tbl(['column', 'type', 'from', 'used by'], t.columns.map(function (c) {
      var k = ck(t.id, c.name);
      return {cls: c.name === col ? 'sel' : null, cells: [
        h('span', null, h('a', {class: 'col', href: tableHref(t.id, c.name), 'data-col': c.name, title: 'show the lineage of ' + c.name}, c.name),
          keyset[c.name] ? h('span', {class: 'badge key', title: 'key column'}, 'key') : null,
          c.comment ? h('div', {class: 'muted'}, c.comment) : null),
        h('code', null, c.type || ''),
        h('span', {class: 'from'}, (UP[k] || []).map(function (u) { var p = split(u); return tlink(p[0], p[1]); })),
        String((DOWN[k] || []).length || '')]};
    })), 'columns'));
    if (col !== undefined) add(out, columnLineage(t, col));
    if (t.lineage_error) add(out, h('p', {class: 'warn'}, 'column lineage incomplete: ' + t.lineage_error));
    // how it is refreshed
    if (t.kind === 'model') {
      var r = t.refresh;
      add(out, section('How it is refreshed', h('div', {class: 'card'},
        h('p', {style: 'margin:0'}, h('span', {class: 'badge ' + (r.incremental ? 'inc' : 'full')}, r.incremental ? 'incremental' : 'full'), ' ',
          r.incremental ? 'from the changes of its inputs: ' + (r.shape || '') : 'refreshed in full: ' + (r.why_full || 'not compiled incrementally') +
          ' (the result is still diffed against the table, so only the net change is written and the models reading it stay incremental)'),
        r.operators && r.operators.length ? h('ul', {class: 'ops'}, r.operators.map(function (o) { return h('li', null, o); })) : null), 'refresh'));
    } else if (t.kind === 'dataset') {
      add(out, section('How it changes', h('div', {class: 'card'}, 'Loaded in ' + (t.mode || '?') + ' mode (deltapipe load, a pipeline run, CALL deltapipe.load or deltapipe.ingest); every load writes its net change to the change log, which the models reading it consume incrementally.'), 'refresh'));
    } else {
      add(out, section('How it changes', h('p', {class: 'card'}, 'An external table: nothing is known of its changes, so the models reading it refresh in full.'), 'refresh'));
    }
    // freshness: when each input last changed
    if (t.upstream.length) {
      add(out, section('Freshness of the inputs', tbl(['input', 'kind', 'last change', 'run', ''], t.upstream.map(function (u) {
        var ut = T[u] || {kind: 'external'}, lc = ut.last_change;
        var newer = lc && t.last_refreshed_at && Date.parse(lc.at) > Date.parse(t.last_refreshed_at);
        return [tlink(u), ut.kind, lc ? when(lc.at) : h('span', {class: 'muted'}, ut.kind === 'external' ? 'unknown (external)' : 'no change recorded'),
                lc ? runLink(lc.run) : '', newer ? h('span', {class: 'warn'}, 'changed after the last refresh: the next run picks it up') : ''];
      })), 'freshness'));
    }
    // table-level lineage
    var ups = closure(id, function (n) { return T[n] ? T[n].upstream : []; });
    var downs = closure(id, function (n) { return T[n] ? T[n].downstream : []; });
    var near = [id].concat(Object.keys(ups), Object.keys(downs));
    add(out, section('Lineage', [
      h('p', {class: 'muted'}, 'upstream: ', links(Object.keys(ups)), ' · downstream: ', links(Object.keys(downs))),
      near.length > 1 ? graph(near.map(function (n) { return tableNode(n, n === id); }),
        tableEdges(near).filter(function (e) { return (e[0] in ups || e[0] === id) && (e[1] in ups || e[1] === id) || (e[0] in downs || e[0] === id) && (e[1] in downs || e[1] === id); }),
        {key: 'tl', width: 200}) : null], 'lineage'));
    if (t.kind === 'model') {
      add(out, section('Audits', t.audits.length ? tbl(['audit', 'kind', 'last result', 'checked'], t.audits.map(function (a) {
        var l = a.last;
        return [h('span', null, h('code', null, a.name), a.sql ? h('details', null, h('summary', {class: 'muted'}, 'SQL'), h('pre', {class: 'sql'}, a.sql)) : null),
                a.blocking ? 'blocking' : 'warning',
                !l ? h('span', {class: 'muted'}, 'not run yet') : l.failing_rows ? h('span', {class: a.blocking ? 'bad' : 'warn'}, fmtN(l.failing_rows) + ' offending rows') : h('span', {class: 'ok'}, 'passed'),
                l ? [when(l.checked_at), ' in ', runLink(l.run)] : ''];
      })) : h('p', {class: 'empty'}, 'No audits: declare them in the model\'s header or in models/' + t.name + '.audits.sql.'), 'audits'));
      add(out, section('SQL', h('pre', {class: 'sql'}, t.sql || ''), 'sql'));
    }
    if (t.kind !== 'external') add(out, section('Last runs', t.runs.length ? tbl(['run', 'status', 'how', 'started', 'seconds', 'read', '+ins', '~upd', '-del', 'rejected', 'note'], t.runs.map(function (n) {
      return [runLink(n.run), statusBadge(n.status), n.strategy || n.kind, when(n.started_at), secs(n.seconds), fmtN(n.rows_in),
              fmtN(n.inserted), fmtN(n.updated), fmtN(n.deleted), fmtN(n.rejected), n.note];
    }), [4, 5, 6, 7, 8, 9]) : h('p', {class: 'empty'}, 'Not run yet.'), 'last-runs'));
    return out;
  }

  // ------------------------------------------------------------------ router
  function route() {
    var hash = location.hash || '#/';
    var parts = hash.slice(2).split('/').map(function (x) { try { return decodeURIComponent(x); } catch (e) { return x; } });
    var view, cur = hash, focus = null;
    if (parts[0] === 'table' && parts[1] !== undefined) {
      view = tablePage(parts[1], parts.length > 2 ? parts.slice(2).join('/') : undefined);
      cur = parts[1];
      focus = parts.length > 2 ? 'column-lineage' : null;
    } else if (parts[0] === 'run') view = runPage(parts[1]);
    else if (parts[0] === 'runs') { view = runsPage(); cur = '#/runs'; }
    else { view = project(); cur = '#/'; }
    main.textContent = '';
    results.classList.remove('open');
    add(main, view);
    add(main, h('footer', null, 'deltapipe ' + D.version + ' · ' + (D.live ? 'served live from the catalog' : 'generated ' + D.generated_at.replace('T', ' ').slice(0, 19) + ' UTC')));
    buildNav(cur);
    document.body.classList.remove('nav-open');
    var f = focus && document.getElementById(focus);
    if (f) f.scrollIntoView({block: 'start'}); else window.scrollTo(0, 0);
    document.title = (parts[0] === 'table' && T[parts[1]] ? T[parts[1]].name + ' · ' : '') + 'deltapipe docs';
  }
  window.addEventListener('hashchange', route);
  route();
})();
