// Ludus arena: the tool calls of an answer as they stream (arena.js hands over their frames).
// One collapsed <details> per call, as the page renders stored calls (battle.html#tool-call).
(function () {
  "use strict";

  function pre(className) {
    var el = document.createElement("pre");
    el.className = className;
    return el;
  }

  function callItem(frame) {
    var list = document.getElementById("tools-" + frame.id);
    if (!list) return null;
    var item = list.querySelector('[data-call="' + frame.call + '"]');
    if (!item) {
      item = document.createElement("details");
      item.className = "tool-call";
      item.setAttribute("data-testid", "tool-call");
      item.dataset.call = frame.call;
      item.appendChild(document.createElement("summary"));
      item.appendChild(pre("tool-arguments"));
      item.appendChild(pre("tool-result"));
      list.appendChild(item);
    }
    return item;
  }

  document.addEventListener("ludus:tool-frame", function (event) {
    var frame = event.detail;
    var item = callItem(frame);
    if (!item) return;
    if (frame.type === "tool_call") {
      item.dataset.toolName = frame.name;
      item.querySelector("summary").textContent = frame.name;
      item.querySelector(".tool-arguments").textContent = frame.arguments;
    } else {
      item.querySelector(".tool-result").textContent = frame.error ? "Error: " + frame.error : frame.result;
      if (frame.error) {
        var failed = document.createElement("span");
        failed.className = "bad";
        failed.textContent = " failed";
        item.querySelector("summary").appendChild(failed);
      }
    }
  });
})();
