// Renders Adaptive Cards with Microsoft's library (node_modules/adaptivecards) in a browser page, as a Teams chat
// column would, and reports what a reader would trip on. Loaded by tests/integration/test_card_browser.py:
//   <div id="host" style="width:Wpx"></div><script type="application/json" id="cards">[card, ...]</script>
// Result on <body>: data-rendered (number of cards rendered), data-clipped (JSON list of elements whose content is
// wider than their box: text cut at the right edge), data-heights (JSON list of rendered heights in px).
"use strict";

// Teams renders the card's markdown subset (bold, links, bullets); a tiny stand-in so that lengths are realistic.
AdaptiveCards.AdaptiveCard.onProcessMarkdown = function (text, result) {
  const escape = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  let html = escape(text)
    .replace(/\[([^\]]*)\]\(([^)]*)\)/g, '<a href="$2">$1</a>')
    .replace(/\*\*([^*]*)\*\*/g, "<b>$1</b>")
    .replace(/\\(.)/g, "$1");
  html = html
    .split("\n")
    .map((line) => (line.startsWith("- ") ? "&bull; " + line.slice(2) : line))
    .join("<br>");
  result.outputHtml = html;
  result.didProcess = true;
};

const cards = JSON.parse(document.getElementById("cards").textContent);
const host = document.getElementById("host");
const clipped = [];
const heights = [];
cards.forEach(function (json, index) {
  const card = new AdaptiveCards.AdaptiveCard();
  card.parse(json);
  const element = card.render();
  const frame = document.createElement("div");
  frame.appendChild(element);
  host.appendChild(frame);
  for (const node of element.querySelectorAll("*")) {
    const style = getComputedStyle(node);
    if (style.overflow === "visible" && style.overflowX === "visible") continue;
    if (node.scrollWidth > node.clientWidth + 1) {
      clipped.push({ card: index, tag: node.tagName, text: (node.textContent || "").slice(0, 80) });
    }
  }
  heights.push(Math.round(element.getBoundingClientRect().height));
});
document.body.setAttribute("data-rendered", String(cards.length));
document.body.setAttribute("data-clipped", JSON.stringify(clipped));
document.body.setAttribute("data-heights", JSON.stringify(heights));
