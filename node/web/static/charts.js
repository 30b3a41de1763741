// Loss curves with uPlot: dnLossChart(figure) draws train and eval loss by step; push(progress)
// adds one metrics.jsonl line (node.train.config.Progress) and redraws once per burst.
"use strict";
function dnLossChart(figure) {
  const byStep = new Map();  // step -> [train loss | null, eval loss | null]
  const plot = new uPlot({
    width: Math.max(320, Math.min(figure.clientWidth || 720, 900)), height: 260,
    scales: {x: {time: false}},
    axes: [{label: "step"}, {label: "loss"}],
    series: [{label: "step"},
             {label: "train loss", stroke: "#0550ae", width: 2, spanGaps: true},
             {label: "eval loss", stroke: "#cf222e", width: 2, spanGaps: true, points: {show: true, size: 6}}],
  }, [[], [], []], figure);
  let pending = false;
  function redraw() {
    pending = false;
    const steps = [...byStep.keys()].sort((a, b) => a - b);
    plot.setData([steps, steps.map(s => byStep.get(s)[0]), steps.map(s => byStep.get(s)[1])]);
    figure.dataset.points = String(steps.length);
    figure.dataset.train = String(steps.filter(s => byStep.get(s)[0] != null).length);  // points per series
    figure.dataset.eval = String(steps.filter(s => byStep.get(s)[1] != null).length);
  }
  return {
    plot,
    flush() { if (pending) redraw(); },  // draws what a pending burst holds, now
    push(p) {
      const row = byStep.get(p.step) || [null, null];
      if (p.kind === "train" && p.loss != null) row[0] = p.loss;
      if (p.kind === "eval" && p.eval_loss != null) row[1] = p.eval_loss;
      if (row[0] == null && row[1] == null) return;
      byStep.set(p.step, row);
      if (!pending) { pending = true; setTimeout(redraw, 30); }  // batches a burst of lines into one redraw
    },
  };
}
