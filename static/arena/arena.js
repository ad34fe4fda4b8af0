// Ludus arena: streams answers over the generations websocket, and the small controls around it
// (stop, copy, enabling votes when both answers are complete). Heavy renderers (code
// highlighting, KaTeX) load only when an answer needs them.
(function () {
  "use strict";
  var TERMINAL = { done: 1, error: 1, cancelled: 1 };
  var socket = null, positions = {}, texts = {}, retry = 0, loaded = {};

  function arena() { return document.getElementById("arena"); }
  function answers() { return document.querySelectorAll("#arena [data-gen]"); }
  function pending() {
    return Array.prototype.filter.call(answers(), function (el) { return !TERMINAL[el.dataset.status]; });
  }

  function connect() {
    if (socket && socket.readyState <= 1) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/generations/");
    socket.onopen = function () { retry = 0; subscribe(); };
    socket.onmessage = function (event) {
      // One frame, or an array of frames in order (several ready at once).
      var data = JSON.parse(event.data);
      (Array.isArray(data) ? data : [data]).forEach(onFrame);
    };
    socket.onclose = function () {
      socket = null;
      if (pending().length) setTimeout(connect, Math.min(4000, 250 * Math.pow(2, retry++)));
    };
  }

  function subscribe() {
    var items = pending().map(function (el) {
      var id = el.dataset.gen;
      return { id: id, after: positions[id] || 0, token: el.dataset.token };
    });
    if (!items.length) return;
    if (!socket || socket.readyState !== 1) { connect(); return; }
    socket.send(JSON.stringify({ type: "subscribe", generations: items }));
  }

  function onFrame(frame) {
    var el = document.getElementById("ans-" + frame.id);
    if (!el) return;
    if (typeof frame.seq === "number") positions[frame.id] = frame.seq;
    if (frame.type === "delta") {
      texts[frame.id] = (texts[frame.id] || "") + frame.text;
      el.classList.add("streaming");
      el.textContent = texts[frame.id];
    } else if (frame.type === "snapshot") {
      texts[frame.id] = frame.text || "";
      el.textContent = texts[frame.id];
    } else if (frame.type === "tool_call" || frame.type === "tool_result") {
      document.dispatchEvent(new CustomEvent("ludus:tool-frame", { detail: frame }));  // tools.js
    } else if (TERMINAL[frame.type] || frame.type === "denied") {
      el.dataset.status = frame.type === "denied" ? "error" : frame.type;
      el.classList.remove("streaming");
      htmx.ajax("GET", el.dataset.render, { target: el, swap: "innerHTML" });
      refresh();
    }
  }

  function refresh() {
    var busy = pending().length > 0;
    document.querySelectorAll("#arena [data-needs-finished]").forEach(function (b) { b.disabled = busy; });
    var stop = document.querySelector("#arena [data-stop]");
    if (stop) stop.hidden = !busy;
  }

  function loadScript(src) {
    if (!loaded[src]) {
      loaded[src] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = src; s.onload = resolve; s.onerror = reject;
        document.head.appendChild(s);
      });
    }
    return loaded[src];
  }
  function loadStyle(href) {
    if (loaded[href]) return;
    loaded[href] = true;
    var l = document.createElement("link");
    l.rel = "stylesheet"; l.href = href;
    document.head.appendChild(l);
  }

  function enhance(root) {
    // The vendored libraries' (content-hashed) URLs, as the page names them.
    var urls = arena() ? arena().dataset : {};
    var code = root.querySelectorAll("pre code");
    if (code.length && urls.highlightJs) {
      loadStyle(urls.highlightCss);
      loadScript(urls.highlightJs).then(function () {
        code.forEach(function (c) { if (!c.dataset.highlighted) window.hljs.highlightElement(c); });
      });
    }
    var math = root.querySelectorAll(".math");
    if (math.length && urls.katexJs) {
      loadStyle(urls.katexCss);
      loadScript(urls.katexJs).then(function () {
        math.forEach(function (m) {
          if (m.dataset.done) return;
          m.dataset.done = "1";
          window.katex.render(m.textContent, m, {
            displayMode: m.classList.contains("math-display"), throwOnError: false,
          });
        });
      });
    }
  }

  function start() {
    // Let 4xx/5xx partials (a refused prompt, a duplicate vote) replace their target: they carry
    // the message for the user.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[2345]..", swap: true, error: false },
    ];
    refresh();
    enhance(document);
    // A page marked for it opens its socket now, not when the answers start: their first tokens
    // then wait for no handshake (a round trip or two more over TLS and a real network).
    if (pending().length || (arena() && "preconnect" in arena().dataset)) connect();
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    refresh();
    enhance(event.target);
    if (pending().length) { if (socket && socket.readyState === 1) subscribe(); else connect(); }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("[data-stop]")) {
      pending().forEach(function (el) {
        if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "stop", id: el.dataset.gen }));
      });
    }
    var copy = target.closest("[data-copy]");
    if (copy) {
      var el = document.getElementById(copy.dataset.copy);
      var text = texts[el.dataset.gen] || el.innerText;
      if (navigator.clipboard) navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
      setTimeout(function () { copy.textContent = "Copy"; }, 1200);
    }
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
