/* Nudge chat widget: one <script src=".../widget.js" data-campaign="..." async> installs it.
 * No dependencies, no build step. Renders in a Shadow DOM so the host page's CSS cannot reach
 * it, and only ever inserts bot or shopper text with textContent, never as HTML. */
(function () {
  'use strict';
  if (window.__nudge) return;
  window.__nudge = true;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  if (!script) return;
  var base = new URL(script.src, location.href);
  var WS_URL = (base.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + base.host + '/ws';
  var PAGE_MODE = script.getAttribute('data-mode') === 'page';
  var CAMPAIGN = script.getAttribute('data-campaign') || null;
  // Who answers, for screen readers' speaker cues ("Stride Shoes: ...").
  var SHOP = script.getAttribute('data-shop') || null;
  // A deep link into a flow (an intent with start = true): the page's ?nudge_start= or the
  // script's data-start; sent with the first hello of this page only.
  var START = new URLSearchParams(location.search).get('nudge_start') || script.getAttribute('data-start') || null;
  // The proactive trigger this page's chat was opened by (sent with that hello only).
  var TRIGGER = null;
  var KEY = 'nudge.visitor';
  var RESUME = 'nudge.key';
  var OPEN = 'nudge.open';
  var CLOSE_IDLE = 4000;
  var CLICK_IDS = ['gclid', 'gbraid', 'wbraid', 'fbclid', 'msclkid', 'ttclid', 'li_fat_id', 'twclid'];
  var de = /^de\b/i.test(navigator.language || '');
  var DE = { open: 'Chat öffnen', close: 'Chat schließen', title: 'Fragen? Wir helfen gern', input: 'Ihre Nachricht', send: 'Senden', offline: 'Verbindung unterbrochen – neuer Versuch …', log: 'Chatverlauf', bubble: 'Chat', joined: ' ist jetzt für Sie da.', back: 'Sie chatten wieder mit unserem Assistenten.', you: 'Sie', shop: 'Shop', replies: 'Antwortvorschläge', newTab: ' (öffnet in neuem Tab)', online: 'Wieder verbunden.', unread: ' neue Nachricht(en)', typing: 'schreibt …' };
  var EN = { open: 'Open chat', close: 'Close chat', title: 'Questions? We are here', input: 'Your message', send: 'Send', offline: 'Connection lost, reconnecting…', log: 'Chat messages', bubble: 'Chat', joined: ' is here to help you.', back: 'You are chatting with our assistant again.', you: 'You', shop: 'Shop', replies: 'Quick replies', newTab: ' (opens in a new tab)', online: 'Back online.', unread: ' new message(s)', typing: 'typing…' };
  var T = de ? DE : EN;

  // The shopper's time zone, so marketing email keeps to their quiet hours.
  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch (e) { return null; }
  }

  // The visitor id and the resume key the server gave with it (the id alone resumes nothing).
  function storage(name, value) {
    try {
      if (value === undefined) return localStorage.getItem(name);
      localStorage.setItem(name, value);
    } catch (e) { /* private mode or blocked storage: the visitor is new each visit */ }
    return null;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }

  var CSS = [
    ':host{all:initial}',
    // Inherited properties cross the shadow boundary: each is set here, with no specificity
    // (:where), so that every rule below still wins.
    ':where(.w,.w *){box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px;font-style:normal;font-variant:normal;font-weight:400;line-height:1.4;letter-spacing:normal;word-spacing:normal;text-transform:none;text-indent:0;text-align:left;text-shadow:none;text-decoration:none;white-space:normal;color:inherit;direction:ltr;visibility:inherit;cursor:auto;list-style:none;quotes:auto;hyphens:manual;tab-size:8;font-kerning:auto;font-stretch:normal}',
    ':where(.w){color:#1a1a1a}',
    '.bubble{position:fixed;right:16px;bottom:16px;z-index:2147483000;border:0;border-radius:28px;padding:14px 20px;background:#1f4fd1;color:#fff;font-size:16px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}',
    // Focus rings at 3:1 or more against what is around them: dark on the panel, white on blue.
    '.bubble:focus-visible,button:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px}',
    '.head button:focus-visible{outline-color:#fff}',
    '.panel{position:fixed;right:16px;bottom:80px;z-index:2147483000;width:min(380px,calc(100vw - 16px));height:min(560px,calc(100vh - 100px));display:flex;flex-direction:column;background:#fff;color:#1a1a1a;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden;transition:opacity .2s,transform .2s}',
    '.panel[hidden]{display:none}',
    '.page .panel{position:static;width:100%;max-width:720px;height:100vh;margin:0 auto;border-radius:0;box-shadow:none}',
    '@media (max-width:420px){.panel{right:8px;left:8px;width:auto;bottom:72px;height:calc(100vh - 88px)}}',
    '@media (prefers-reduced-motion:reduce){.panel{transition:none}}',
    '.head{display:flex;align-items:center;justify-content:space-between;padding:12px 16px;background:#1f4fd1;color:#fff}',
    'h2{margin:0;font-size:16px;font-weight:600}',
    '.x{background:none;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:4px 8px}',
    '.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;font-size:15px;line-height:1.4}',
    '.msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}',
    '.bot{align-self:flex-start;background:#eef1f7}',
    '.me{align-self:flex-end;background:#1f4fd1;color:#fff}',
    '.note{align-self:center;color:#5a5a5a;font-size:13px}',
    '.who{display:block;font-size:12px;font-weight:600;color:#3a3a3a}',
    '.choices{display:flex;flex-wrap:wrap;gap:6px;padding:0 12px 8px}',
    '.choices button,.cta{border:1px solid #1f4fd1;background:#fff;color:#1f4fd1;border-radius:16px;padding:6px 12px;font-size:14px;cursor:pointer;text-decoration:none}',
    '.cta{align-self:flex-start;background:#1f4fd1;color:#fff}',
    'form{display:flex;gap:8px;padding:10px;border-top:1px solid #ddd}',
    'input{flex:1;min-width:0;padding:10px;border:1px solid #888;border-radius:8px;font-size:16px}',
    'form button{border:0;background:#1f4fd1;color:#fff;border-radius:8px;padding:0 14px;font-size:15px;cursor:pointer}',
    '.sr,.msg[data-cue]::before{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}',
    // Read by screen readers before the message, not part of its text.
    '.msg[data-cue]::before{content:attr(data-cue) ": "}',
    '.msg{position:relative}',
    '.choices{max-height:40%;overflow-y:auto}',
    // The time under each message, out of its text.
    '.msg[data-time]::after{content:attr(data-time);display:block;font-size:11px;opacity:.75;margin-top:2px}',
    '.badge{position:absolute;top:-6px;right:-6px;min-width:22px;height:22px;border-radius:11px;background:#b00020;color:#fff;font-size:13px;font-weight:600;line-height:22px;text-align:center;padding:0 6px}',
    '.badge[hidden]{display:none}',
    '.typing{align-self:flex-start;color:#5a5a5a;font-size:13px}',
    '.typing[hidden]{display:none}',
    '.teaser{position:fixed;right:16px;bottom:80px;z-index:2147483000;max-width:260px;padding:10px 12px;border:0;border-radius:12px;background:#fff;color:#1a1a1a;box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer;text-align:left}',
    '@media (prefers-color-scheme:dark){.panel{background:#1b1d22;color:#eceef2}.bot{background:#2c3240;color:#eceef2}.note,.typing{color:#b8bcc6}input{background:#111318;color:#eceef2;border-color:#6b7080}.choices button{background:#1b1d22;color:#a9c1ff;border-color:#a9c1ff}.w button:focus-visible,.w input:focus-visible,.w a:focus-visible{outline-color:#eceef2}.who{color:#c9ccd4}}'
  ].join('\n');

  // An element no page styles by accident (no `div` rule reaches it), reset inline with
  // !important, which only another inline !important could beat.
  var host = el('nudge-chat', { id: 'nudge-chat' });
  host.style.cssText = 'all:initial !important;display:block !important';
  var root = host.attachShadow({ mode: 'open' });
  var style = el('style', {}, CSS);
  var wrap = el('div', { class: PAGE_MODE ? 'w page' : 'w' });
  var bubble = el('button', { class: 'bubble', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'nudge-panel', 'aria-label': T.open }, T.bubble);
  // Messages that arrived while the panel was closed.
  var badge = el('span', { class: 'badge', 'aria-hidden': 'true' });
  badge.hidden = true;
  bubble.append(badge);
  var unread = 0;
  var typing = el('div', { class: 'typing', role: 'status' }, T.typing);
  typing.hidden = true;
  var panel = el('section', { class: 'panel', id: 'nudge-panel', role: 'dialog', 'aria-label': T.title });
  // Not a <header>: inside the page that would be a second banner landmark.
  var header = el('div', { class: 'head' });
  var title = el('h2', {}, T.title);
  var closeBtn = el('button', { class: 'x', type: 'button', 'aria-label': T.close }, '\u00d7');
  var log = el('div', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-label': T.log, tabindex: '0' });
  var choices = el('div', { class: 'choices', role: 'group', 'aria-label': T.replies });
  var form = el('form');
  var label = el('label', { class: 'sr', for: 'nudge-input' }, T.input);
  var input = el('input', { id: 'nudge-input', type: 'text', autocomplete: 'off', maxlength: '1000', placeholder: T.input });
  var send = el('button', { type: 'submit' }, T.send);
  header.append(title);
  if (!PAGE_MODE) header.append(closeBtn);
  form.append(label, input, send);
  panel.append(header, log, choices, form);
  if (PAGE_MODE) {
    wrap.append(panel);
  } else {
    panel.hidden = true;
    wrap.append(bubble, panel);
  }
  root.append(style, wrap);

  var lastBot = null;

  function add(kind, text, cue, at) {
    if (kind.indexOf('bot') === 0) {
      lastBot = text;
      typing.hidden = true;
      if (panel.hidden && !PAGE_MODE) count(unread + 1);
    }
    var node = el('div', { class: 'msg ' + kind }, text);
    cue = cue || (kind === 'me' ? T.you : kind === 'bot' ? SHOP || T.shop : null);
    if (cue) node.setAttribute('data-cue', cue);
    if (kind !== 'note') node.setAttribute('data-time', clock(at || Date.now()));
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }

  // The widget's own words follow the conversation's language (from `welcome`), which can differ
  // from the browser's.
  function speak(locale) {
    var next = locale === 'de' ? DE : locale === 'en' ? EN : T;
    if (next === T) return;
    T = next;
    de = T === DE;
    panel.setAttribute('aria-label', T.title);
    title.textContent = T.title;
    closeBtn.setAttribute('aria-label', T.close);
    log.setAttribute('aria-label', T.log);
    choices.setAttribute('aria-label', T.replies);
    label.textContent = T.input;
    input.placeholder = T.input;
    send.textContent = T.send;
    typing.textContent = T.typing;
    count(unread);
  }

  function note(text) {
    add('note', text);
  }

  function clock(ms) {
    try { return new Date(ms).toLocaleTimeString(navigator.language || undefined, { hour: '2-digit', minute: '2-digit' }); } catch (e) { return ''; }
  }

  // The unread count on the bubble, and in its name for screen readers.
  function count(n) {
    unread = n;
    badge.textContent = n ? String(n) : '';
    badge.hidden = !n;
    bubble.setAttribute('aria-label', (panel.hidden ? T.open : T.close) + (n ? ', ' + n + T.unread : ''));
  }

  // A person's answer, under their name, so it never passes for the bot's.
  function person(name, text) {
    var node = add('bot person', '', name);
    node.append(el('span', { class: 'who', 'aria-hidden': 'true' }, name), document.createTextNode(text));
  }

  function showChoices(list) {
    choices.textContent = '';
    (list || []).forEach(function (c) {
      var b = el('button', { type: 'button' }, c.label);
      b.addEventListener('click', function () {
        add('me', c.label);
        choices.textContent = '';
        send_({ type: 'choose', value: c.value });
        // The buttons are gone: focus goes to the input, not to the page.
        input.focus();
      });
      choices.append(b);
    });
    // The buttons take room from the log: keep its last line in view.
    log.scrollTop = log.scrollHeight;
  }

  function checkout(frame) {
    var url;
    try { url = new URL(frame.url, location.href); } catch (e) { return; }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return;
    var a = el('a', { class: 'cta', href: url.href, target: '_blank', rel: 'noopener' }, frame.label || 'Checkout');
    a.append(el('span', { class: 'sr' }, T.newTab));
    log.append(a);
    log.scrollTop = log.scrollHeight;
  }

  function firePixels(events) {
    (events || []).forEach(function (p) {
      var params = p.params || {};
      try {
        if (typeof window.fbq === 'function') window.fbq('trackCustom', p.event, params);
        if (typeof window.gtag === 'function') window.gtag('event', p.event, params);
        if (Array.isArray(window.dataLayer)) window.dataLayer.push(Object.assign({ event: p.event }, params));
      } catch (e) { /* a broken pixel on the host page must not break the chat */ }
    });
  }

  /* Connection: opened when the chat is first opened, re-opened with backoff when it drops. */
  var ws = null;
  var ready = false;
  var queue = [];
  var retry = 0;
  var timer = null;
  var wanted = false;
  var greeted = false;
  var withPerson = null;
  var offline = false;
  // Set by `welcome`: the next reply may repeat the open question already on screen.
  var resumed = false;

  function hello() {
    var q = new URLSearchParams(location.search);
    var utm = {};
    ['source', 'medium', 'campaign', 'term', 'content'].forEach(function (k) {
      var v = q.get('utm_' + k);
      if (v) utm[k] = v;
    });
    var clicks = {};
    CLICK_IDS.forEach(function (k) {
      var v = q.get(k);
      if (v) clicks[k] = v;
    });
    return {
      type: 'hello',
      visitor: storage(KEY),
      key: storage(RESUME),
      token: q.get('nudge') || null,
      campaign: CAMPAIGN,
      locale: navigator.language || null,
      timezone: zone(),
      page: location.href,
      referrer: document.referrer || null,
      utm: utm,
      click_ids: clicks,
      start: START,
      trigger: START && TRIGGER
    };
  }

  function connect() {
    if (ws || !wanted) return;
    try {
      ws = new WebSocket(WS_URL, 'chat.v1');
    } catch (e) {
      ws = null;
      return later();
    }
    ws.onopen = function () {
      ws.send(JSON.stringify(hello()));
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === 'welcome') {
        storage(KEY, frame.visitor);
        if (frame.key) storage(RESUME, frame.key);
        speak(frame.locale);
        // A page that shows nothing yet (a reload, a new tab) shows the conversation so far.
        if (frame.history && frame.history.length && !log.querySelector('.msg')) {
          frame.history.forEach(function (line) { add(line.from === 'shopper' ? 'me' : 'bot', line.text, null, line.at); });
          count(0);
          greeted = true;
        }
        resumed = !START;
        START = null;
        TRIGGER = null;
        ready = true;
        if (offline) note(T.online);
        offline = false;
        retry = 0;
        var pending = queue;
        queue = [];
        pending.forEach(function (f) { ws.send(JSON.stringify(f)); });
      } else if (frame.type === 'reply') {
        // The greeting comes with every (re)connection; a page shows it once. The open question
        // asked again after a reconnect is not shown twice either.
        var again = resumed && frame.text === lastBot;
        resumed = false;
        // Its quick replies are shown again, though: the history has no buttons.
        if (again) return showChoices(frame.choices);
        if (frame.intent === 'welcome') {
          if (greeted) return;
          greeted = true;
        }
        if (frame.locale) speak(frame.locale);
        if (frame.agent) {
          withPerson = frame.agent;
          person(frame.agent, frame.text);
        } else {
          add('bot', frame.text);
        }
        showChoices(frame.choices);
      } else if (frame.type === 'handoff') {
        // Told on every (re)connection while a person has the chat; noted when it changes.
        if (frame.agent !== withPerson) note(frame.agent ? frame.agent + T.joined : T.back);
        withPerson = frame.agent;
      } else if (frame.type === 'checkout') {
        checkout(frame);
      } else if (frame.type === 'tags') {
        firePixels(frame.pixel);
      } else if (frame.type === 'received') {
        typing.hidden = true;
      } else if (frame.type === 'error') {
        typing.hidden = true;
        note(frame.message);
      }
    };
    ws.onclose = function (event) {
      ws = null;
      ready = false;
      if (event.code === CLOSE_IDLE) {
        wanted = queue.length > 0;
        if (wanted) connect();
        return;
      }
      later();
    };
  }

  function later() {
    if (timer || !wanted) return;
    if (retry === 1) {
      note(T.offline);
      offline = true;
    }
    var delay = Math.min(30000, 1000 * Math.pow(2, retry)) * (0.5 + Math.random() / 2);
    retry += 1;
    timer = setTimeout(function () {
      timer = null;
      connect();
    }, delay);
  }

  function send_(frame) {
    // Until the answer comes: a reply, `received` or an error hides it.
    if (frame.type === 'say' || frame.type === 'choose') {
      log.append(typing);
      typing.hidden = false;
      log.scrollTop = log.scrollHeight;
    }
    if (ready && ws && ws.readyState === 1) {
      ws.send(JSON.stringify(frame));
    } else {
      queue.push(frame);
      wanted = true;
      connect();
    }
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = '';
    add('me', text);
    choices.textContent = '';
    send_({ type: 'say', text: text });
  });

  // `restoring`: reopened after a reload, which must not take the page's focus.
  function open(restoring) {
    var teaser = root.querySelector('.teaser');
    if (teaser) teaser.remove();
    panel.hidden = false;
    count(0);
    bubble.setAttribute('aria-expanded', 'true');
    bubble.setAttribute('aria-label', T.close);
    wanted = true;
    remember(true);
    connect();
    if (!restoring) input.focus();
  }

  // Whether the panel is open, for this tab's next page.
  function remember(isOpen) {
    try {
      if (isOpen) sessionStorage.setItem(OPEN, '1'); else sessionStorage.removeItem(OPEN);
    } catch (e) { /* storage blocked: the panel starts closed */ }
  }

  function wasOpen() {
    try { return sessionStorage.getItem(OPEN) === '1'; } catch (e) { return false; }
  }

  function close() {
    remember(false);
    panel.hidden = true;
    bubble.setAttribute('aria-expanded', 'false');
    bubble.setAttribute('aria-label', T.open);
    bubble.focus();
  }

  bubble.addEventListener('click', function () {
    if (panel.hidden) open(false); else close();
  });
  closeBtn.addEventListener('click', close);
  panel.addEventListener('keydown', function (event) {
    if (event.key === 'Escape' && !PAGE_MODE) {
      event.stopPropagation();
      close();
    }
  });

  /* The host page's consent banner tells the chat what the shopper agreed to:
   *   window.Nudge.consent({ marketing: true, ads: false })
   * Pixel events are only sent by the server, and fired here, after ads consent. */
  window.Nudge = {
    consent: function (choice) {
      send_({ type: 'consent', marketing: !!(choice && choice.marketing), ads: !!(choice && choice.ads) });
    }
  };

  /* Proactive triggers (/widget/triggers): when all of a trigger's conditions hold on this page,
   * the chat opens in its intent or shows a teaser; once per cooldown, never over an open chat,
   * never taking the focus, one per page. */
  function triggers() {
    var q = new URLSearchParams(location.search);
    var seen = Date.now();
    var idle = Date.now();
    var scrolled = 0;
    var leaving = false;
    var fired = false;
    // A known visitor asks with its key, for triggers on what only the server knows (segments, tags).
    var who = storage(KEY) && storage(RESUME) ? { method: 'POST', body: JSON.stringify({ visitor: storage(KEY), key: storage(RESUME) }) } : {};
    fetch(base.origin + '/widget/triggers', who).then(function (r) { return r.json(); }).then(function (body) {
      var list = (body.triggers || []).filter(function (t) {
        var last = Number(storage('nudge.t.' + t.id) || 0);
        var returning = storage(KEY) !== null;
        return (!t.page || onPage(t.page)) && Date.now() - last >= t.cooldown_ms &&
          (t.visitor === 'any' || (t.visitor === 'returning') === returning) &&
          (!t.campaign || t.campaign === (q.get('utm_campaign') || CAMPAIGN)) && (!t.source || t.source === q.get('utm_source'));
      });
      function check() {
        if (fired || !panel.hidden) return;
        var now = Date.now();
        var t = list.filter(function (t) {
          return (!t.after_ms || now - seen >= t.after_ms) && (!t.scroll || scrolled >= t.scroll) &&
            (!t.exit_intent || leaving) && (!t.idle_ms || now - idle >= t.idle_ms);
        })[0];
        if (!t) return;
        fired = true;
        storage('nudge.t.' + t.id, String(now));
        // An A/B test of teasers: a visitor keeps the variant first drawn.
        var texts = t.teaser[de ? 'de' : 'en'] || t.teaser.en || [];
        var v = Number(storage('nudge.t.' + t.id + '.v'));
        if (!(v >= 0 && v < texts.length)) v = Math.floor(Math.random() * texts.length) || 0;
        storage('nudge.t.' + t.id + '.v', String(v));
        var shown = JSON.stringify({ trigger: t.id, variant: v });
        if (!(navigator.sendBeacon && navigator.sendBeacon(base.origin + '/widget/triggers/shown', shown))) {
          fetch(base.origin + '/widget/triggers/shown', { method: 'POST', body: shown }).catch(function () {});
        }
        TRIGGER = { id: t.id, variant: v };
        if (t.action === 'open') return start(t.intent, true);
        var teaser = el('button', { class: 'teaser', type: 'button' }, texts[v]);
        teaser.addEventListener('click', function () { teaser.remove(); start(t.intent, false); });
        wrap.append(teaser);
      }
      setInterval(check, 500);
      addEventListener('scroll', function () {
        var h = document.documentElement.scrollHeight - innerHeight;
        scrolled = Math.max(scrolled, h > 0 ? 100 * scrollY / h : 100);
        check();
      }, { passive: true });
      ['mousemove', 'keydown', 'scroll', 'touchstart'].forEach(function (e) { addEventListener(e, function () { idle = Date.now(); }, { passive: true }); });
      // Exit intent: a pointer leaving through the top of the window (not on touch screens).
      document.addEventListener('mouseout', function (e) {
        if (!e.relatedTarget && e.clientY <= 0 && !matchMedia('(pointer:coarse)').matches) { leaving = true; check(); }
      });
    }).catch(function () { /* no triggers: the chat waits to be opened */ });
  }

  // A trigger's `page`: a path prefix, or with `*` a pattern for the whole path.
  function onPage(p) {
    if (p.indexOf('*') < 0) return location.pathname.indexOf(p) === 0;
    var parts = p.split('*').map(function (s) { return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'); });
    return new RegExp('^' + parts.join('.*') + '$').test(location.pathname);
  }

  function start(intent, restoring) {
    START = intent;
    open(restoring);
  }

  function mount() {
    document.body.append(host);
    if (!PAGE_MODE) triggers();
    if (PAGE_MODE) open(false);
    else if (START || wasOpen()) open(true);
  }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);
})();
