// The Chat page: sends the conversation to POST /chat/answer (same chunks as /v1/chat/completions),
// streams the answer in, highlights attributed spans; optionally the base model's answer beside it.
"use strict";
(function () {
  const form = document.getElementById("chat");
  if (!form) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const turns = $("turns"), prompt = $("prompt"), send = $("send"), errorBox = $("chat-error");
  let history = [];  // the conversation with the chosen models: [{role, content}]

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function showError(message) { errorBox.textContent = message; errorBox.hidden = !message; }

  // Renders `text` into `node` with the attributed spans as <mark> (overlaps after the first are skipped).
  function renderSpans(node, text, spans) {
    node.textContent = "";
    let at = 0;
    for (const s of [...spans].sort((a, b) => a.start - b.start)) {
      if (s.start < at || s.end > text.length || s.end <= s.start) continue;
      node.append(text.slice(at, s.start));
      const m = el("mark", null, text.slice(s.start, s.end));
      m.title = `Credits contributor ${s.contributor} (contribution #${s.contribution_id}, example ${s.example_index})`;
      m.dataset.contributor = s.contributor;
      m.tabIndex = 0;
      node.append(m);
      at = s.end;
    }
    node.append(text.slice(at));
  }

  // Streams one answer into `box`; resolves to the answer's text ("" on error).
  async function stream(model, messages, box) {
    const text = box.querySelector(".text"), status = box.querySelector(".status");
    const body = {model, messages, temperature: Number($("temperature").value), max_tokens: Number($("max_tokens").value)};
    let answer = "", spans = [];
    try {
      const res = await fetch("/chat/answer", {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json", "Accept": "text/event-stream", "X-CSRF-Token": csrf},
      });
      if (!res.ok) {
        const raw = await res.text();
        let msg = raw;
        try { msg = JSON.parse(raw).error.message; } catch (e) { /* not JSON: show the text */ }
        throw new Error(msg || `HTTP ${res.status}`);
      }
      const reader = res.body.getReader(), decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const event = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data: ")) continue;  // ": keep-alive" comments
            const data = line.slice(6);
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message);
            const delta = chunk.choices?.[0]?.delta?.content;
            if (delta) { answer += delta; text.textContent = answer; }
            if (chunk.attribution) spans = chunk.attribution;
            const finish = chunk.choices?.[0]?.finish_reason;
            if (finish) status.textContent = finish === "length" ? "stopped at the token limit" : "";
          }
        }
      }
      renderSpans(text, answer, spans);
      box.dataset.done = "true";
      return answer;
    } catch (e) {
      status.textContent = "";
      box.dataset.done = "error";
      showError(`${model}: ${e.message}`);
      return "";
    }
  }

  function answerBox(model, label) {
    const box = el("section", "answer turn");
    box.dataset.model = model;
    const head = el("header", null, label);
    box.append(head, el("div", "text"), el("small", "status", "…"));
    return box;
  }

  async function ask() {
    const content = prompt.value.trim();
    if (!content) return;
    showError("");
    const select = $("model"), model = select.value, base = select.selectedOptions[0].dataset.base;
    const system = $("system").value.trim();
    history.push({role: "user", content});
    const messages = (system ? [{role: "system", content: system}] : []).concat(history);
    const user = el("div", "turn user");
    user.append(el("header", null, "You"), el("div", "text", content));
    const answers = el("div", "answers");
    const main = answerBox(model, model);
    answers.append(main);
    const jobs = [stream(model, messages, main)];
    if ($("compare").checked && base && base !== model) {
      const other = answerBox(base, `${base} (base model)`);
      answers.append(other);
      jobs.push(stream(base, messages, other));
    }
    turns.append(user, answers);
    prompt.value = "";
    send.disabled = true;
    const [answer] = await Promise.all(jobs);
    send.disabled = false;
    if (answer) history.push({role: "assistant", content: answer}); else history.pop();
    prompt.focus();
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); ask(); });
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); ask(); }
  });
  $("reset").addEventListener("click", () => { history = []; turns.textContent = ""; showError(""); prompt.focus(); });
})();
