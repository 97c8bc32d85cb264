// rackboot status page: live updates over Server-Sent Events and the action buttons.
// Plain JavaScript, no build step, no inline code (the page's CSP is default-src 'self').
// Everything from the server is put into the DOM with textContent, never as HTML.
(function () {
  'use strict';

  var loadId = Math.random().toString(36).slice(2) + Date.now().toString(36);
  document.body.dataset.loadId = loadId;
  window.__loaded = loadId;

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute('content') : null;
  var flash = document.getElementById('flash');

  function show(msg, kind) {
    if (!flash) { return; }
    flash.textContent = msg;
    flash.className = 'flash shown ' + (kind || '');
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  // ---- times -------------------------------------------------------------------------------
  function ago(ms) {
    var s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) { return s + ' s ago'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min ago'; }
    if (s < 86400) { return Math.floor(s / 3600) + ' h ago'; }
    return Math.floor(s / 86400) + ' d ago';
  }
  function timeEl(ms) {
    if (ms === null || ms === undefined) { return el('time', '', 'never'); }
    var t = el('time', '', ago(ms));
    t.dataset.ms = String(ms);
    t.title = new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
    return t;
  }
  function refreshTimes() {
    document.querySelectorAll('time[data-ms]').forEach(function (t) {
      t.textContent = ago(Number(t.dataset.ms));
    });
  }
  setInterval(refreshTimes, 5000);

  // ---- labels (same wording as pages.rs) ---------------------------------------------------
  function bootLabel(b) {
    if (!b) { return 'agent (default)'; }
    switch (b.mode) {
      case 'agent': return 'agent';
      case 'profile': return 'profile: ' + b.profile;
      case 'chain': return 'chain: ' + b.url;
      case 'disk':
        if (b.method === 'http404') { return 'disk (http 404)'; }
        if (b.method === 'sanboot') { return 'disk (sanboot)'; }
        return 'disk';
      case 'cordoned': return b.reason ? 'cordoned: ' + b.reason : 'cordoned';
      default: return String(b.mode);
    }
  }
  function bmcType(url) {
    if (url.indexOf('ipmi://') === 0) { return 'IPMI'; }
    if (url.indexOf('redfish+http://') === 0) { return 'Redfish (http)'; }
    if (url.indexOf('redfish://') === 0) { return 'Redfish'; }
    return '?';
  }
  function badge(kind, value) {
    return el('span', 'badge ' + kind + '-' + String(value).replace(/[^a-z0-9_-]/gi, ''), value);
  }

  // ---- machine rows ------------------------------------------------------------------------
  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function put(cell, nodes) {
    if (!cell) { return; }
    while (cell.firstChild) { cell.removeChild(cell.firstChild); }
    nodes.forEach(function (n) { cell.appendChild(n); });
  }
  function eventNodes(ev) {
    return [el('span', 'kind', ev.kind), document.createTextNode(' ' + ev.message + ' '),
      (function () { var s = el('span', 'sub'); s.appendChild(timeEl(ev.at_ms)); return s; })()];
  }
  function actionButtons(m) {
    var d = el('div', 'actions');
    [['power', 'on', 'On', ''], ['power', 'off', 'Off', 'warn'], ['power', 'cycle', 'Cycle', 'warn'],
      ['boot', 'disk', 'Disk', ''], ['boot', 'agent', 'Agent', ''], ['lifecycle', 'accept', 'Accept', ''],
      ['provision', '', 'Provision…', ''], ['lifecycle', 'release', 'Release', 'warn'], ['lifecycle', 'wipe', 'Wipe', 'warn'],
      ['lifecycle', 'cordon', 'Cordon', 'warn']
    ].forEach(function (a) {
      var b = el('button', 'act ' + a[3], a[2]);
      b.type = 'button';
      b.dataset.machine = m.id;
      b.dataset.name = m.name || m.id;
      b.dataset.op = a[0];
      b.dataset.arg = a[1];
      d.appendChild(b);
    });
    return d;
  }
  function newRow(m, withActions) {
    var tr = el('tr');
    tr.dataset.machineId = m.id;
    var c0 = el('td');
    var a = el('a', '', m.name || m.id);
    a.href = '/machines/' + encodeURIComponent(m.id);
    a.dataset.field = 'name';
    c0.appendChild(a);
    c0.appendChild(el('div', 'sub mono', m.uuid || m.id));
    tr.appendChild(c0);
    ['macs', 'state', 'power', 'bmc', 'boot_mode', 'last_seen', 'last_event'].forEach(function (f) {
      var td = el('td');
      td.dataset.field = f;
      if (f === 'macs') { td.className = 'mono'; }
      tr.appendChild(td);
    });
    if (withActions) {
      var td = el('td');
      td.appendChild(actionButtons(m));
      tr.appendChild(td);
    }
    put(field(tr, 'last_event'), [el('span', 'muted', 'none')]);
    return tr;
  }
  function fill(root, m, ev) {
    var name = field(root, 'name');
    if (name && name.tagName === 'A') { name.textContent = m.name || m.id; }
    var macs = field(root, 'macs');
    if (macs) {
      var nodes = [];
      m.macs.forEach(function (x, i) {
        if (i) { nodes.push(el('br')); }
        nodes.push(document.createTextNode(x));
      });
      put(macs, nodes);
    }
    var st = field(root, 'state');
    if (st) { put(st, [badge('state', m.state)]); st.title = m.state_reason || ''; }
    put(field(root, 'power'), [badge('power', m.power)]);
    if (m.bmc) {
      var h = m.bmc.health;
      var hb = !h ? el('span', 'badge', 'unchecked') : h.reachable ? el('span', 'badge power-on', 'reachable') : el('span', 'badge power-off', 'unreachable');
      if (h && !h.reachable) { hb.title = h.error || ''; }
      put(field(root, 'bmc'), [document.createTextNode(bmcType(m.bmc.url) + ' '), hb, el('div', 'sub mono', m.bmc.url)]);
    } else {
      put(field(root, 'bmc'), [el('span', 'muted', 'none')]);
    }
    put(field(root, 'boot_mode'), [document.createTextNode(bootLabel(m.boot_mode))]);
    put(field(root, 'last_seen'), [timeEl(m.boot ? m.boot.last_seen_ms : null)]);
    if (ev) { put(field(root, 'last_event'), eventNodes(ev)); }
    root.classList.remove('gone');
    root.classList.add('changed');
    setTimeout(function () { root.classList.remove('changed'); }, 2000);
  }
  function rootsOf(id) {
    return Array.prototype.filter.call(document.querySelectorAll('[data-machine-id]'), function (r) {
      return r.dataset.machineId === id;
    });
  }
  function updateMachine(ev) {
    var roots = rootsOf(ev.machine_id);
    var m = ev.machine;
    if (!m) {
      roots.forEach(function (r) {
        r.classList.add('gone');
        put(field(r, 'state'), [badge('state', 'removed')]);
        put(field(r, 'last_event'), eventNodes(ev));
      });
      return;
    }
    var tbody = document.getElementById('machines');
    if (roots.length === 0 && tbody) {
      var filter = tbody.dataset.filterState;
      if (!filter || filter === m.state) {
        var tr = newRow(m, tbody.dataset.actions === 'yes');
        tbody.appendChild(tr);
        roots = [tr];
        var count = document.querySelector('h1 .count');
        if (count) { count.textContent = String(tbody.rows.length); }
        var empty = document.querySelector('main > p.empty');
        if (empty) { empty.remove(); }
      }
    }
    roots.forEach(function (r) { fill(r, m, ev); });
  }

  // ---- event tables ------------------------------------------------------------------------
  function addEventRow(tbodyId, ev, withMachine, max) {
    var tb = document.getElementById(tbodyId);
    if (!tb) { return; }
    var tr = el('tr', 'changed');
    tr.dataset.seq = String(ev.seq);
    var t = el('td');
    t.appendChild(timeEl(ev.at_ms));
    tr.appendChild(t);
    if (withMachine) {
      var td = el('td');
      var a = el('a', 'mono', ev.machine_id);
      a.href = '/machines/' + encodeURIComponent(ev.machine_id);
      td.appendChild(a);
      tr.appendChild(td);
    }
    var k = el('td');
    k.appendChild(el('span', 'kind', ev.kind));
    tr.appendChild(k);
    tr.appendChild(el('td', '', ev.message));
    tb.insertBefore(tr, tb.firstChild);
    while (max && tb.rows.length > max) { tb.deleteRow(tb.rows.length - 1); }
    var empty = tb.parentNode.parentNode.querySelector('p.empty');
    if (empty) { empty.remove(); }
  }
  function addEvent(ev) {
    addEventRow('recent-events', ev, true, 20);
    addEventRow('all-events', ev, true, 0);
    var detail = document.querySelector('section.machine[data-machine-id]');
    if (detail && detail.dataset.machineId === ev.machine_id) {
      addEventRow('machine-events', ev, false, 0);
      if (ev.kind === 'boot') { addEventRow('boot-events', ev, false, 0); }
      if (ev.kind === 'power' || ev.kind === 'power_error' || ev.kind === 'bootdev') {
        addEventRow('power-events', ev, false, 0);
      }
    }
  }

  // ---- live updates ------------------------------------------------------------------------
  var liveEl = document.getElementById('live');
  function live(on) {
    document.body.dataset.live = on ? 'yes' : 'no';
    if (liveEl) {
      liveEl.textContent = on ? 'live' : 'reconnecting';
      liveEl.className = 'live ' + (on ? 'on' : 'off');
    }
  }
  if (window.EventSource) {
    var es = new EventSource('/api/v1/events/stream');
    es.onopen = function () { live(true); };
    es.onerror = function () { live(false); };
    es.addEventListener('machine-event', function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      updateMachine(ev);
      addEvent(ev);
    });
    es.addEventListener('resync', function () {
      show('Some live updates were missed: reload the page for the full picture.', 'warn');
    });
  }

  // ---- actions -----------------------------------------------------------------------------
  function describe(op, arg) {
    if (op === 'power') { return 'Power ' + arg; }
    if (op === 'lifecycle') { return arg.charAt(0).toUpperCase() + arg.slice(1); }
    return 'Boot mode ' + arg + ' for';
  }
  // Send one API call for button b (disabled meanwhile) and report the outcome in the flash.
  function send(b, what, method, path, body) {
    b.disabled = true;
    show(what + ': working…', 'busy');
    return fetch(path, {
      method: method,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf || '' },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = JSON.parse(t); } catch (_) { j = null; }
        if (r.ok) {
          // A power reply says the power; a lifecycle reply is the machine.
          show(what + ': done' + (j && j.action && j.power ? ', power is ' + j.power : '')
            + (j && j.state ? ', now ' + j.state : ''), 'ok');
        } else {
          show(what + ' failed (' + r.status + '): ' + (j && j.error ? j.error : t), 'error');
        }
      });
    }).catch(function (err) {
      show(what + ' failed: ' + err, 'error');
    }).then(function () { b.disabled = false; });
  }
  function machinePath(id) { return '/api/v1/machines/' + encodeURIComponent(id); }
  // power: POST .../power {action}; boot: PUT .../boot {mode}; lifecycle: POST .../{action}.
  function act(b) {
    var op = b.dataset.op, arg = b.dataset.arg, id = b.dataset.machine, name = b.dataset.name;
    if (op === 'provision') { openPicker(b); return; }
    var what = describe(op, arg) + ' ' + name;
    if (!window.confirm(what + '?')) { return; }
    var path = op === 'lifecycle' ? arg : op;
    var body = op === 'power' ? { action: arg }
      : op === 'boot' ? { mode: arg }
        : arg === 'cordon' ? { reason: 'cordoned from the web page' } : {};
    send(b, what, op === 'boot' ? 'PUT' : 'POST', machinePath(id) + '/' + path, body);
  }

  // ---- provision: pick a profile, confirm, POST .../provision {profile} ---------------------
  function closePicker() {
    var p = document.getElementById('provision-picker');
    if (p) { p.remove(); }
  }
  function openPicker(b) {
    closePicker();
    var box = el('div', 'picker');
    box.id = 'provision-picker';
    box.dataset.machine = b.dataset.machine;
    var label = el('label', '', 'Profile ');
    var sel = el('select');
    sel.id = 'provision-profile';
    sel.disabled = true;
    sel.appendChild(el('option', '', 'loading…'));
    label.appendChild(sel);
    var go = el('button', 'go', 'Provision');
    go.type = 'button';
    go.id = 'provision-go';
    go.disabled = true;
    var cancel = el('button', '', 'Cancel');
    cancel.type = 'button';
    cancel.id = 'provision-cancel';
    box.appendChild(label);
    box.appendChild(go);
    box.appendChild(cancel);
    b.parentNode.appendChild(box);
    cancel.addEventListener('click', closePicker);
    go.addEventListener('click', function () {
      var profile = sel.value;
      var what = 'Provision ' + b.dataset.name + ' with profile ' + profile;
      if (!profile || !window.confirm(what + '?')) { return; }
      closePicker();
      send(b, what, 'POST', machinePath(b.dataset.machine) + '/provision', { profile: profile });
    });
    fetch('/api/v1/profiles', { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) { throw new Error('profiles: HTTP ' + r.status); }
      return r.json();
    }).then(function (list) {
      while (sel.firstChild) { sel.removeChild(sel.firstChild); }
      if (!list.length) {
        closePicker();
        show('No profiles to provision with: add one with `rackboot profiles set`.', 'warn');
        return;
      }
      list.forEach(function (p) {
        var o = el('option', '', p.name);
        o.value = p.name;
        sel.appendChild(o);
      });
      sel.disabled = false;
      go.disabled = false;
      sel.focus();
    }).catch(function (err) {
      closePicker();
      show('Cannot list profiles: ' + err, 'error');
    });
  }
  document.addEventListener('click', function (e) {
    var b = e.target.closest ? e.target.closest('button.act') : null;
    if (b) { e.preventDefault(); act(b); }
  });
}());
