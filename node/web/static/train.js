// A run's page: follows /train/jobs/<id>/metrics (server-sent events, one per metrics.jsonl line)
// into the loss chart. EventSource reconnects by itself and resends Last-Event-ID, so the server
// sends only the lines after the last one drawn; the stream's `end` event closes it for good.
"use strict";
(function () {
  const figure = document.getElementById("loss-chart");
  if (!figure || !figure.dataset.stream) return;
  const chart = dnLossChart(figure);
  const summary = document.getElementById("progress-summary");
  const source = new EventSource(figure.dataset.stream);
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    chart.push(p);
    const loss = p.kind === "eval" ? `eval loss ${p.eval_loss?.toFixed(4)}` : p.loss != null ? `train loss ${p.loss.toFixed(4)}` : p.kind;
    summary.textContent = `step ${p.step} of ${p.total_steps}: ${loss}`;
  });
  source.addEventListener("end", (e) => {
    source.close();
    chart.flush();  // every line is drawn before the page says the stream ended
    figure.dataset.ended = e.data;
    summary.textContent += e.data === "done" ? " (finished)" : " (stopped)";
  });
})();
