// Validates Adaptive Cards with Microsoft's own library (node_modules/adaptivecards), targeting version 1.5.
//
//   node tests/js/validate_card.js < card.json
//
// stdin: one card, one Teams webhook message ({"type": "message", "attachments": [...]}), or a JSON array
// of either. Every card is parsed with a SerializationContext whose targetVersion is 1.5 and then
// validated (validateProperties); any parse or validation event is a failure.
// stdout: {"cards": N, "events": [{"card": i, "phase": ..., "event": ..., "message": ...}]}
// exit code: 0 when there is no event, 1 when there is, 2 on unusable input.
"use strict";

const path = require("path");
const AC = require(path.join(__dirname, "..", "..", "node_modules", "adaptivecards", "dist", "adaptivecards.js"));

function cardsOf(value) {
  if (Array.isArray(value)) return value.flatMap(cardsOf);
  if (value && value.type === "message" && Array.isArray(value.attachments)) {
    return value.attachments.map((a) => {
      if (a.contentType !== "application/vnd.microsoft.card.adaptive") {
        throw new Error(`unexpected attachment contentType ${JSON.stringify(a.contentType)}`);
      }
      return a.content;
    });
  }
  return [value];
}

function validate(card, index) {
  const events = [];
  if (!card || card.type !== "AdaptiveCard") {
    events.push({ card: index, phase: "input", event: "type", message: "not an AdaptiveCard" });
    return events;
  }
  if (card.version !== "1.5") {
    events.push({ card: index, phase: "input", event: "version", message: `version ${card.version}, expected 1.5` });
  }
  const context = new AC.SerializationContext();
  context.targetVersion = AC.Versions.v1_5;
  const adaptiveCard = new AC.AdaptiveCard();
  adaptiveCard.parse(card, context);
  for (let i = 0; i < context.eventCount; i++) {
    const e = context.getEventAt(i);
    events.push({ card: index, phase: String(e.phase), event: String(e.event), message: e.message });
  }
  const results = adaptiveCard.validateProperties();
  for (const e of results.validationEvents) {
    events.push({ card: index, phase: "validate", event: String(e.event), message: e.message });
  }
  return events;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  let cards;
  try {
    cards = cardsOf(JSON.parse(input));
  } catch (err) {
    process.stdout.write(JSON.stringify({ cards: 0, events: [], error: String(err.message || err) }) + "\n");
    process.exit(2);
  }
  const events = cards.flatMap((card, i) => validate(card, i));
  process.stdout.write(JSON.stringify({ cards: cards.length, events }) + "\n");
  process.exit(events.length === 0 ? 0 : 1);
});
