// The prompt viewer. Every value from the run is untrusted text: it is only ever placed
// with textContent (never innerHTML), so an answer cannot become markup or script.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var byId = function (id) { return document.getElementById(id); };
  var candidateSelect = byId("filter-candidate");
  var outcomeSelect = byId("filter-outcome");
  var categorySelect = byId("filter-category");
  var list = byId("prompt-list");
  var detail = byId("detail");
  var count = byId("prompt-count");
  var selected = null;
  var LABELS = { win: "win", tie: "tie", loss: "loss", invalid: "invalid", none: "not judged" };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function option(value, text) {
    var node = el("option", null, text);
    node.value = value;
    return node;
  }

  function outcomeOf(candidate, promptId) {
    var per = data.outcomes[candidate] || {};
    return per[promptId] || { outcome: "none", score: null, n_invalid: 0 };
  }

  function matches(prompt) {
    var o = outcomeOf(candidateSelect.value, prompt.id);
    var wanted = outcomeSelect.value;
    if (categorySelect.value !== "all" && prompt.category !== categorySelect.value) {
      return false;
    }
    if (wanted === "all") { return true; }
    if (wanted === "invalid") { return o.outcome === "invalid" || o.n_invalid > 0; }
    return o.outcome === wanted;
  }

  function renderList() {
    list.replaceChildren();
    var shown = 0;
    data.prompts.forEach(function (prompt) {
      if (!matches(prompt)) { return; }
      shown += 1;
      var o = outcomeOf(candidateSelect.value, prompt.id);
      var item = el("li");
      item.dataset.promptId = prompt.id;
      item.dataset.outcome = o.outcome;
      if (prompt.id === selected) { item.classList.add("selected"); }
      var button = el("button");
      button.type = "button";
      var left = el("span");
      left.appendChild(el("span", "pid", prompt.id));
      left.appendChild(document.createTextNode(" "));
      left.appendChild(el("span", "meta", prompt.category));
      button.appendChild(left);
      var label = LABELS[o.outcome] + (o.n_invalid && o.outcome !== "invalid" ? "*" : "");
      button.appendChild(el("span", "badge " + o.outcome, label));
      button.addEventListener("click", function () { select(prompt.id, true); });
      item.appendChild(button);
      list.appendChild(item);
    });
    count.textContent = shown + " of " + data.prompts.length + " prompts";
  }

  function findPrompt(id) {
    for (var i = 0; i < data.prompts.length; i += 1) {
      if (data.prompts[i].id === id) { return data.prompts[i]; }
    }
    return null;
  }

  function answerBox(model, role, promptId) {
    var box = el("div", "answer " + role);
    box.dataset.role = role;
    box.dataset.model = model;
    box.appendChild(el("h4", null, role + ": " + model));
    var answer = (data.answers[model] || {})[promptId];
    if (answer) {
      box.appendChild(el("pre", "text answer-text", answer.text));
      var note = answer.n_tokens + " tokens" +
        (answer.finish_reason === "length" ? ", cut at max_new_tokens" : "");
      box.appendChild(el("p", "meta", note));
    } else {
      box.appendChild(el("p", "meta", "(no answer in this run)"));
    }
    return box;
  }

  function gameBox(game, candidate, index) {
    var box = el("div", "game");
    var roleOf = function (model) { return model === candidate ? "candidate" : "baseline"; };
    box.appendChild(el("h4", null, "game " + (index + 1) + ": A = " + game.first +
      " (" + roleOf(game.first) + "), B = " + game.second + " (" + roleOf(game.second) + ")"));
    var rows = [
      ["verdict", game.verdict === null ? "none (invalid)" : game.verdict],
      ["result", game.winner_model === null ? "invalid: not counted, never a tie" :
        game.winner_model === "tie" ? "tie" : game.winner_model + " wins"],
      ["judge", game.judge],
      ["lengths (A / B)", (game.first_length === null ? "?" : game.first_length) + " / " +
        (game.second_length === null ? "?" : game.second_length) + " chars"],
    ];
    if (game.weight_a !== null) {
      rows.push(["P(A better)", Number(game.weight_a).toFixed(3)]);
    }
    if (game.attempts > 1) { rows.push(["calls", game.attempts]); }
    if (game.error) { rows.push(["error", game.error]); }
    var dl = el("dl");
    rows.forEach(function (row) {
      dl.appendChild(el("dt", null, row[0]));
      dl.appendChild(el("dd", null, row[1]));
    });
    box.appendChild(dl);
    box.appendChild(el("h4", null, "judge's output"));
    box.appendChild(el("pre", "raw", game.raw || "(empty)"));
    return box;
  }

  function renderDetail(promptId) {
    var candidate = candidateSelect.value;
    var prompt = findPrompt(promptId);
    detail.replaceChildren();
    if (!prompt) {
      detail.appendChild(el("p", "placeholder", "No prompt " + promptId + " in this run."));
      return;
    }
    detail.dataset.promptId = prompt.id;
    detail.dataset.candidate = candidate;
    var o = outcomeOf(candidate, prompt.id);
    var title = el("h3", null, prompt.id + " ");
    title.appendChild(el("span", "badge " + o.outcome, LABELS[o.outcome]));
    detail.appendChild(title);
    var meta = "category " + prompt.category;
    if (o.score !== null) { meta += "; prompt score " + o.score + " for " + candidate; }
    if (o.n_invalid) { meta += "; " + o.n_invalid + " invalid judgment(s)"; }
    detail.appendChild(el("p", "meta", meta));
    if (prompt.messages.length === 0) {
      detail.appendChild(el("p", "note", "Prompt text not available (see the note above)."));
    }
    prompt.messages.forEach(function (message) {
      var box = el("div", "message");
      box.appendChild(el("div", "role", message.role));
      box.appendChild(el("pre", "text prompt-text", message.content));
      detail.appendChild(box);
    });
    if (prompt.reference) {
      var ref = el("div", "message reference");
      ref.appendChild(el("div", "role", "reference answer"));
      ref.appendChild(el("pre", "text", prompt.reference));
      detail.appendChild(ref);
    }
    var answers = el("div", "answers");
    answers.appendChild(answerBox(candidate, "candidate", prompt.id));
    answers.appendChild(answerBox(data.baseline, "baseline", prompt.id));
    detail.appendChild(answers);
    var games = ((data.games[candidate] || {})[prompt.id]) || [];
    var gamesBox = el("div", "games");
    games.forEach(function (game, i) { gamesBox.appendChild(gameBox(game, candidate, i)); });
    if (games.length === 0) { gamesBox.appendChild(el("p", "meta", "No games judged.")); }
    detail.appendChild(gamesBox);
  }

  function writeHash() {
    var params = new URLSearchParams();
    if (selected) { params.set("prompt", selected); }
    params.set("candidate", candidateSelect.value);
    history.replaceState(null, "", "#" + params.toString());
  }

  function select(promptId, updateHash) {
    selected = promptId;
    renderList();
    renderDetail(promptId);
    if (updateHash) { writeHash(); }
  }

  function readHash() {
    var hash = window.location.hash.replace(/^#/, "");
    if (hash.indexOf("prompt=") === -1 && hash.indexOf("candidate=") === -1) { return false; }
    var params = new URLSearchParams(hash);
    var candidate = params.get("candidate");
    if (candidate !== null && data.candidates.indexOf(candidate) !== -1) {
      candidateSelect.value = candidate;
    }
    var promptId = params.get("prompt");
    if (promptId !== null) {
      select(promptId, false);
      byId("prompts").scrollIntoView();
    } else {
      renderList();
    }
    return true;
  }

  data.candidates.forEach(function (name) {
    candidateSelect.appendChild(option(name, name + " vs " + data.baseline));
  });
  data.categories.forEach(function (name) { categorySelect.appendChild(option(name, name)); });
  if (data.prompts_note) {
    var note = byId("prompts-note");
    note.textContent = "Note: " + data.prompts_note + ".";
    note.hidden = false;
  }
  [candidateSelect, outcomeSelect, categorySelect].forEach(function (control) {
    control.addEventListener("change", function () {
      renderList();
      if (selected) { renderDetail(selected); }
      if (control === candidateSelect) { writeHash(); }
    });
  });
  window.addEventListener("hashchange", readHash);
  if (!readHash()) { renderList(); }
})();
