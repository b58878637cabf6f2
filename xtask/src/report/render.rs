//! The report's renderer: [`render`] turns a [`Report`] into files (a pure function: same data,
//! same bytes). Plots are SVG drawn by plotters (no bitmap, no font files: the viewer's browser
//! lays the text out), the page links them with relative paths, so the directory can be opened
//! from disk without a network.

use std::fmt::Write as _;

use anyhow::Context as _;
use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Report, XDP_PAIRS};

/// One file of the rendered report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// File name inside the report directory.
    pub name: String,
    /// Its contents.
    pub text: String,
}

/// Whether a figure holds across machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ka beside its anchor in one run: the ratio is the figure.
    Ratio,
    /// An absolute measurement: valid on the machine named only.
    Absolute,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Ratio => "ratio in one run: ka and its anchor measured in the same run, on the same machine",
            Kind::Absolute => "absolute: valid only on the machine named below",
        }
    }

    fn badge(self) -> &'static str {
        match self {
            Kind::Ratio => "ratio in one run",
            Kind::Absolute => "absolute",
        }
    }
}

const KA: RGBColor = RGBColor(31, 119, 180);
const ANCHOR: RGBColor = RGBColor(230, 120, 20);
const FLOOR: RGBColor = RGBColor(150, 150, 150);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const FONT: &str = "sans-serif";
const WIDTH: u32 = 960;

/// A section of the page: a plot, what kind of figure it is, a table of its numbers and the
/// CSV behind it.
struct Section {
    id: &'static str,
    title: String,
    kind: Kind,
    text: String,
    svgs: Vec<String>,
    table: Table,
}

/// Rows of strings with a header; written as CSV and as an HTML table.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn csv(&self) -> String {
        let field = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let mut out = self.header.iter().map(|h| field(h)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    fn html(&self) -> String {
        let mut h = String::from("<table>\n<tr>");
        for c in &self.header {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>\n");
        for r in &self.rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", esc(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        h
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// Nanoseconds: a decimal only below 100.
fn ns(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1} ns")
    } else {
        format!("{v:.0} ns")
    }
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

/// Renders `report` into the report's files: `index.html`, `report.json`, one SVG per plot
/// and one CSV per section.
///
/// # Errors
/// A plot cannot be drawn (a bug: the test on the fixture catches it).
pub fn render(report: &Report) -> anyhow::Result<Vec<Output>> {
    let caption = report.machine.caption(&report.date);
    let mut files = Vec::new();
    let mut sections = Vec::new();
    for build in [xdp, e2e, takeover, vrrp_cpu, health, reload, directors] {
        if let Some((section, svgs)) = build(report, &caption)? {
            files.extend(svgs);
            files.push(Output { name: format!("{}.csv", section.id), text: section.table.csv() });
            sections.push(section);
        }
    }
    files.push(Output { name: "report.json".into(), text: serde_json::to_string_pretty(report).context("serializing the report")? + "\n" });
    files.push(Output { name: "index.html".into(), text: page(report, &sections) });
    Ok(files)
}

type Built = anyhow::Result<Option<(Section, Vec<Output>)>>;

fn page(r: &Report, sections: &[Section]) -> String {
    let m = &r.machine;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ka benchmark report, {date}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; line-height: 1.4; }}\n\
         table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }}\n\
         .ratio {{ background: #e3f1e3; }} .absolute {{ background: #f5e9dc; }}\n\
         .badge {{ padding: 0.1em 0.5em; border-radius: 0.3em; font-size: 0.85em; }}\n\
         img {{ max-width: 100%; border: 1px solid #eee; }}\n</style>\n</head>\n<body>\n\
         <h1>ka benchmark report</h1>\n<table>\n\
         <tr><th>machine</th><td>{cpu}, {cores} cores, Linux {kernel}</td></tr>\n\
         <tr><th>date (UTC)</th><td>{date}</td></tr>\n\
         <tr><th>load average at the start</th><td>{load}</td></tr>\n\
         <tr><th>commit</th><td>{commit}</td></tr>\n\
         <tr><th>command</th><td><code>{command}</code></td></tr>\n</table>\n",
        date = esc(&r.date),
        cpu = esc(&m.cpu_model),
        cores = m.cores,
        kernel = esc(&m.kernel),
        load = m.load_avg.map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}")),
        commit = esc(r.commit.as_deref().unwrap_or("unknown")),
        command = esc(&r.command),
    );
    h.push_str(
        "<p>Two kinds of figure. <span class=\"badge ratio\">ratio in one run</span>: ka beside its \
         anchor (the reference XDP load balancer, nftables, keepalived, the RFC's timer), measured \
         in the same run on the same machine; the ratio is what carries over to another machine. \
         <span class=\"badge absolute\">absolute</span>: nanoseconds, packets per second, milliseconds \
         and CPU shares of this machine, valid only on it (these VMs are shared: other work slows a \
         run, never speeds it up). Every plot names the machine and the date; the raw data is in \
         <a href=\"report.json\">report.json</a> and one CSV per section.</p>\n",
    );
    if !r.notes.is_empty() {
        // First: which sections come from an earlier run (--merge), which benchmark failed.
        h.push_str("<h2 id=\"notes\">Notes of the run</h2>\n<ul>\n");
        for n in &r.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }
    if sections.is_empty() {
        h.push_str("<p>No benchmark results in this report.</p>\n");
    }
    h.push_str("<ul>\n");
    for s in sections {
        let _ = writeln!(h, "<li><a href=\"#{}\">{}</a> <span class=\"badge {}\">{}</span></li>", s.id, esc(&s.title), css(s.kind), s.kind.badge());
    }
    h.push_str("</ul>\n");
    for s in sections {
        let _ = writeln!(h, "<h2 id=\"{}\">{}</h2>", s.id, esc(&s.title));
        let _ = writeln!(h, "<p><span class=\"badge {}\">{}</span> {}</p>", css(s.kind), s.kind.text(), s.text);
        for svg in &s.svgs {
            let _ = writeln!(h, "<p><img src=\"{svg}\" alt=\"{}\"></p>", esc(&s.title));
        }
        h.push_str(&s.table.html());
        let _ = writeln!(h, "<p><a href=\"{}.csv\">{}.csv</a></p>", s.id, s.id);
    }
    let _ = writeln!(h, "<p>Reproduce: <code>{}</code> (as root).</p>\n</body>\n</html>", esc(&r.command));
    h
}

fn css(k: Kind) -> &'static str {
    match k {
        Kind::Ratio => "ratio",
        Kind::Absolute => "absolute",
    }
}

// ---------------------------------------------------------------------------------------------
// Plot helpers

/// A horizontal bar chart: one row per category, one bar per series in it.
struct Bars {
    title: String,
    kind: Kind,
    x_desc: String,
    categories: Vec<String>,
    series: Vec<BarSeries>,
    /// Vertical lines: (x, label).
    lines: Vec<(f64, String)>,
}

struct BarSeries {
    name: String,
    color: RGBColor,
    /// Each bar's colour, one per category (the series' colour unless set).
    colors: Vec<RGBColor>,
    /// One per category.
    values: Vec<Option<f64>>,
    /// Text after the bar's end, one per category.
    notes: Vec<Option<String>>,
    /// Extra marks on the bar (e.g. every round), one list per category.
    marks: Vec<Vec<f64>>,
}

impl BarSeries {
    fn new(name: impl Into<String>, color: RGBColor, values: Vec<Option<f64>>) -> BarSeries {
        let n = values.len();
        BarSeries { name: name.into(), color, colors: vec![color; n], values, notes: vec![None; n], marks: vec![Vec::new(); n] }
    }
}

/// Points on a horizontal axis, one row per category.
struct Dots {
    title: String,
    kind: Kind,
    x_desc: String,
    categories: Vec<String>,
    series: Vec<DotSeries>,
    lines: Vec<(f64, String)>,
    /// Start the axis at 0 (else zoom on the data and the lines).
    from_zero: bool,
    /// Text at the right end of each category row.
    notes: Vec<Option<String>>,
}

struct DotSeries {
    name: String,
    color: RGBColor,
    cross: bool,
    /// (category, value); several per category are spread vertically.
    points: Vec<(usize, f64)>,
}

/// Pixels a text of `chars` characters takes at `size` (an estimate: the viewer lays it out).
fn text_px(chars: usize, size: f64) -> f64 {
    chars as f64 * size * 0.56
}

/// The width of the category labels' area, at most 47 % of the plot.
fn label_width(labels: &[String], size: f64) -> u32 {
    let chars = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    ((text_px(chars, size) as u32) + 16).clamp(60, WIDTH * 47 / 100)
}

/// `label` cut to fit `width` pixels at `size`, with an ellipsis.
fn fit(label: &str, width: u32, size: f64) -> String {
    let max = ((f64::from(width) - 8.0) / (size * 0.56)).max(4.0) as usize;
    if label.chars().count() <= max {
        label.to_owned()
    } else {
        format!("{}…", label.chars().take(max - 1).collect::<String>())
    }
}

/// How a legend entry looks.
#[derive(Clone, Copy)]
enum Mark {
    Bar,
    Dot,
    Cross,
}

/// The title, the kind of figure, the legend and the machine caption around the plot; returns
/// the area left for the plot.
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    kind: Kind,
    legend: &[(String, RGBColor, Mark)],
    caption: &str,
) -> anyhow::Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (_, h) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(56);
    let (body, bottom) = rest.split_vertically(h.saturating_sub(56 + 26));
    top.draw(&Text::new(title.to_owned(), (12, 8), (FONT, 19).into_font().style(FontStyle::Bold))).map_err(plot_err)?;
    let sub = format!("{} ({})", kind.badge(), if kind == Kind::Ratio { "holds across machines" } else { "this machine only" });
    let color = if kind == Kind::Ratio { GREEN } else { ANCHOR };
    let mut x = 12 + text_px(sub.chars().count(), 13.0) as i32 + 36;
    top.draw(&Text::new(sub, (12, 34), (FONT, 13).into_font().color(&color))).map_err(plot_err)?;
    for (name, color, mark) in legend {
        let y = 41;
        match mark {
            Mark::Bar => top.draw(&Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())),
            Mark::Dot => top.draw(&Circle::new((x + 7, y), 5, color.filled())),
            Mark::Cross => top.draw(&Cross::new((x + 7, y), 5, color.stroke_width(2))),
        }
        .map_err(plot_err)?;
        top.draw(&Text::new(name.clone(), (x + 20, y), TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center)))).map_err(plot_err)?;
        x += 20 + text_px(name.chars().count(), 13.0) as i32 + 24;
    }
    bottom.draw(&Text::new(caption.to_owned(), (12, 6), (FONT, 12).into_font().color(&BLACK.mix(0.65)))).map_err(plot_err)?;
    Ok(body)
}

fn plot_err<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

/// Axis numbers: as few decimals as the axis' span needs.
fn axis_number(v: f64, span: f64) -> String {
    if span >= 20.0 {
        format!("{v:.0}")
    } else if span >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws the vertical reference lines with their labels (staggered; right of the line, or left
/// of it past the middle of the plot).
fn ref_lines<'a, 'b>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    chart: &mut ChartContext<'b, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    lines: &[(f64, String)],
    (x0, x1): (f64, f64),
    top: f64,
) -> anyhow::Result<()> {
    for (i, (x, label)) in lines.iter().enumerate() {
        chart.draw_series(std::iter::once(PathElement::new(vec![(*x, 0.0), (*x, top)], RED.stroke_width(2)))).map_err(plot_err)?;
        // Above the plot, in the room the caller left (16 px per line).
        let p = chart.backend_coord(&(*x, top));
        let y = p.1 - 4 - 16 * i32::try_from(lines.len() - i).unwrap_or(0) + 2;
        let right = (x - x0) / (x1 - x0) > 0.55;
        let (px, h) = if right { (p.0 - 5, HPos::Right) } else { (p.0 + 5, HPos::Left) };
        root.draw(&Text::new(label.clone(), (px, y), TextStyle::from((FONT, 12).into_font()).color(&RED).pos(Pos::new(h, VPos::Top))))
            .map_err(plot_err)?;
    }
    Ok(())
}

fn bars_svg(b: &Bars, caption: &str) -> anyhow::Result<String> {
    let n = b.categories.len().max(1);
    let ns = b.series.len().max(1);
    let row_h = (ns as u32 * 20 + 16).max(34);
    let top_pad = if b.lines.is_empty() { 6 } else { 8 + 16 * b.lines.len() as u32 };
    let height = 56 + 26 + 50 + top_pad + row_h * n as u32 + 10;
    let label_w = label_width(&b.categories, 13.0);
    // Leave room right of the longest bar for its note.
    let plot_w = f64::from(WIDTH - label_w - 30);
    let mut xmax = b.lines.iter().map(|l| l.0 * 1.05).fold(0.0_f64, f64::max);
    for s in &b.series {
        for (ci, v) in s.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let end = s.marks[ci].iter().copied().fold(*v, f64::max);
            let note = s.notes[ci].as_ref().map_or(0.0, |t| text_px(t.chars().count(), 12.0) + 12.0);
            let room = (plot_w - note).max(plot_w * 0.3);
            xmax = xmax.max(end * plot_w / room);
        }
    }
    let xmax = if xmax > 0.0 && xmax.is_finite() { xmax * 1.02 } else { 1.0 };
    let legend: Vec<_> = if b.series.len() > 1 { b.series.iter().map(|s| (s.name.clone(), s.color, Mark::Bar)).collect() } else { Vec::new() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let body = frame(&root, &b.title, b.kind, &legend, caption)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(20)
            .margin_top(top_pad)
            .x_label_area_size(40)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..xmax, 0.0..n as f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(b.x_desc.as_str())
            .x_label_formatter(&|v| axis_number(*v, xmax))
            .axis_desc_style((FONT, 13))
            .label_style((FONT, 12))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(plot_err)?;
        let band = 0.72 / ns as f64;
        for (si, s) in b.series.iter().enumerate() {
            // Category i's row spans [n-1-i, n-i]; series stack from the top of it.
            let y_of = |ci: usize| -> (f64, f64) {
                let top = (n - ci) as f64 - 0.14 - band * si as f64;
                (top - band * 0.92, top)
            };
            chart
                .draw_series(s.values.iter().enumerate().filter_map(|(ci, v)| {
                    let (y0, y1) = y_of(ci);
                    v.map(|v| Rectangle::new([(0.0, y0), (v, y1)], s.colors[ci].filled()))
                }))
                .map_err(plot_err)?;
            for (ci, marks) in s.marks.iter().enumerate() {
                let (y0, y1) = y_of(ci);
                chart
                    .draw_series(marks.iter().map(|&m| PathElement::new(vec![(m, y0), (m, y1)], BLACK.mix(0.7).stroke_width(2))))
                    .map_err(plot_err)?;
            }
            for (ci, note) in s.notes.iter().enumerate() {
                let (Some(note), Some(v)) = (note, s.values[ci]) else { continue };
                let (y0, y1) = y_of(ci);
                let x = s.marks[ci].iter().copied().fold(v, f64::max);
                let p = chart.backend_coord(&(x, (y0 + y1) / 2.0));
                root.draw(&Text::new(note.clone(), (p.0 + 6, p.1), TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center))))
                    .map_err(plot_err)?;
            }
        }
        ref_lines(&root, &mut chart, &b.lines, (0.0, xmax), n as f64)?;
        for (ci, cat) in b.categories.iter().enumerate() {
            let p = chart.backend_coord(&(0.0, (n - ci) as f64 - 0.5));
            root.draw(&Text::new(fit(cat, label_w, 13.0), (p.0 - 8, p.1), TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center))))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn dots_svg(d: &Dots, caption: &str) -> anyhow::Result<String> {
    let n = d.categories.len().max(1);
    let row_h = 46;
    let top_pad = if d.lines.is_empty() { 6 } else { 8 + 16 * d.lines.len() as u32 };
    let height = 56 + 26 + 50 + top_pad + row_h * n as u32 + 10;
    let values: Vec<f64> = d.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(d.lines.iter().map(|l| l.0)).collect();
    let hi = values.iter().copied().fold(f64::MIN, f64::max);
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    let label_w = label_width(&d.categories, 13.0);
    let plot_w = f64::from(WIDTH - label_w - 30);
    // Room on the right for the longest note.
    let note_px = d.notes.iter().flatten().map(|t| text_px(t.chars().count(), 12.0) + 16.0).fold(0.0, f64::max);
    let widen = plot_w / (plot_w - note_px).max(plot_w * 0.4);
    let (x0, x1) = if values.is_empty() {
        (0.0, 1.0)
    } else if d.from_zero {
        (0.0, hi * 1.05 * widen)
    } else {
        let pad = ((hi - lo) * 0.25).max(hi.abs() * 0.004).max(0.05);
        let (a, b) = ((lo - pad).max(0.0), hi + pad);
        (a, a + (b - a) * widen)
    };
    let legend: Vec<_> = if d.series.len() > 1 {
        d.series.iter().map(|s| (s.name.clone(), s.color, if s.cross { Mark::Cross } else { Mark::Dot })).collect()
    } else {
        Vec::new()
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let body = frame(&root, &d.title, d.kind, &legend, caption)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(20)
            .margin_top(top_pad)
            .x_label_area_size(40)
            .y_label_area_size(label_w)
            .build_cartesian_2d(x0..x1, 0.0..n as f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(d.x_desc.as_str())
            .x_label_formatter(&|v| axis_number(*v, x1 - x0))
            .axis_desc_style((FONT, 13))
            .label_style((FONT, 12))
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(plot_err)?;
        let ns = d.series.len().max(1);
        for (si, s) in d.series.iter().enumerate() {
            // Each series has its own lane in the row; points of one category spread in it.
            let lane = 0.7 / ns as f64;
            let count = |ci: usize| s.points.iter().filter(|p| p.0 == ci).count().max(1);
            let mut seen = vec![0usize; n];
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.0 < n)
                .map(|&(ci, v)| {
                    let k = seen[ci];
                    seen[ci] += 1;
                    let top = (n - ci) as f64 - 0.15 - lane * si as f64;
                    let y = top - lane * (0.2 + 0.6 * (k as f64 + 0.5) / count(ci) as f64);
                    (v, y)
                })
                .collect();
            let color = s.color;
            if s.cross {
                chart.draw_series(pts.iter().map(|&p| Cross::new(p, 5, color.stroke_width(2)))).map_err(plot_err)?;
            } else {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(plot_err)?;
            }
        }
        for ci in 1..n {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(x0, (n - ci) as f64), (x1, (n - ci) as f64)], BLACK.mix(0.15))))
                .map_err(plot_err)?;
        }
        ref_lines(&root, &mut chart, &d.lines, (x0, x1), n as f64)?;
        for (ci, cat) in d.categories.iter().enumerate() {
            let p = chart.backend_coord(&(x0, (n - ci) as f64 - 0.5));
            root.draw(&Text::new(fit(cat, label_w, 13.0), (p.0 - 8, p.1), TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center))))
                .map_err(plot_err)?;
            if let Some(Some(note)) = d.notes.get(ci) {
                let p = chart.backend_coord(&(x1, (n - ci) as f64 - 0.5));
                root.draw(&Text::new(note.clone(), (p.0 - 4, p.1), TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center))))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn svg_out(name: &str, svg: String) -> Output {
    Output { name: name.to_owned(), text: svg }
}

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        let s = ms / 1000.0;
        if s.fract() == 0.0 {
            format!("{s:.0} s")
        } else {
            format!("{s:.2} s")
        }
    } else {
        format!("{ms:.0} ms")
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

// ---------------------------------------------------------------------------------------------
// Sections

fn xdp(r: &Report, caption: &str) -> Built {
    let Some(x) = &r.xdp else { return Ok(None) };
    let mut svgs = Vec::new();
    let ka = |id: &str| x.ka.iter().find(|p| p.id == id).map(|p| p.ns);
    let rf = |name: &str| x.reference.iter().find(|p| p.name == name).map(|p| p.ns);
    let mut table = Table { header: vec!["what", "ka ns/packet", "reference ns/packet", "ka / reference", "ka x own floor"], rows: Vec::new() };
    let floor = ka("floor");
    let text;
    if x.reference.is_empty() {
        text = format!(
            "ka's XDP program through BPF_PROG_TEST_RUN, ns per packet. The reference load balancer did not run ({}), so \
             the only ratio is to ka's own floor (swap MACs, XDP_TX) of the same run.",
            esc(x.reference_note.as_deref().unwrap_or("no reason recorded"))
        );
    } else {
        text = "ka's XDP program and the reference XDP load balancer (Katran-like: parse, one hash lookup, hash onto a backend \
                array, rewrite, XDP_TX; <code>lb_lru</code> adds a kernel LRU connection table; no counters, ICMP, IPv6, VRRP or \
                tunnels) through BPF_PROG_TEST_RUN on the same machine in the same run, ns per packet, 64-byte TCP. The ratios \
                are the figures; the nanoseconds hold for this machine only."
            .to_owned();
        let mut cats = Vec::new();
        let (mut kv, mut rv, mut notes) = (Vec::new(), Vec::new(), Vec::new());
        for (kid, rname, label) in XDP_PAIRS {
            let (k, rr) = (ka(kid), rf(rname));
            if k.is_none() && rr.is_none() {
                continue;
            }
            cats.push(label.to_owned());
            kv.push(k);
            rv.push(rr);
            notes.push(k.zip(rr).map(|(k, rr)| format!("{}, {:.2}× the reference", ns(k), k / rr)));
        }
        let mut ka_s = BarSeries::new("ka", KA, kv);
        ka_s.notes = notes;
        let mut ref_s = BarSeries::new("reference XDP LB", ANCHOR, rv.clone());
        ref_s.notes = rv.iter().map(|v| v.map(ns)).collect();
        let b = Bars {
            title: "XDP ns per packet: ka beside the reference load balancer".into(),
            kind: Kind::Ratio,
            x_desc: "ns per packet (BPF_PROG_TEST_RUN, 64-byte TCP; lower is better)".into(),
            categories: cats,
            series: vec![ka_s, ref_s],
            lines: Vec::new(),
        };
        svgs.push(svg_out("xdp-vs-reference.svg", bars_svg(&b, caption)?));
    }
    for (kid, rname, label) in XDP_PAIRS {
        let (k, rr) = (ka(kid), rf(rname));
        table.rows.push(vec![
            label.to_owned(),
            k.map_or_else(String::new, f1),
            rr.map_or_else(String::new, f1),
            k.zip(rr).map_or_else(String::new, |(k, rr)| f2(k / rr)),
            k.zip(floor).map_or_else(String::new, |(k, f)| f1(k / f)),
        ]);
    }
    for p in &x.ka {
        if XDP_PAIRS.iter().any(|pair| pair.0 == p.id) {
            continue;
        }
        table.rows.push(vec![p.path.clone(), f1(p.ns), String::new(), String::new(), floor.map_or_else(String::new, |f| f1(p.ns / f))]);
    }
    if !x.ka.is_empty() {
        let mut s = BarSeries::new("ka", KA, x.ka.iter().map(|p| Some(p.ns)).collect());
        s.notes = x.ka.iter().map(|p| Some(floor.map_or_else(|| ns(p.ns), |f| format!("{}, {:.1}× floor", ns(p.ns), p.ns / f)))).collect();
        let b = Bars {
            title: "XDP ns per packet, every path of ka".into(),
            kind: Kind::Absolute,
            x_desc: "ns per packet (BPF_PROG_TEST_RUN; × floor: ratio to ka_xdp_tx in the same run)".into(),
            categories: x.ka.iter().map(|p| p.path.clone()).collect(),
            series: vec![s],
            lines: Vec::new(),
        };
        svgs.push(svg_out("xdp-paths.svg", bars_svg(&b, caption)?));
    }
    let names = svgs.iter().map(|o| o.name.clone()).collect();
    Ok(Some((Section { id: "xdp", title: "XDP datapath, ns per packet".into(), kind: Kind::Ratio, text, svgs: names, table }, svgs)))
}

fn e2e(r: &Report, caption: &str) -> Built {
    let Some(e) = &r.e2e else { return Ok(None) };
    let nft = e.rows.iter().find(|r| r.key == "nft").map(|r| r.per_core_mpps);
    let color = |k: &str| match k {
        "floor" | "floor_touch" => FLOOR,
        "nft" | "reference" => ANCHOR,
        _ => KA,
    };
    let mut s = BarSeries::new("Mpps per core", KA, e.rows.iter().map(|r| Some(r.per_core_mpps)).collect());
    s.colors = e.rows.iter().map(|r| color(&r.key)).collect();
    s.marks = e.rows.iter().map(|r| r.rounds_per_core_mpps.clone()).collect();
    s.notes = e
        .rows
        .iter()
        .map(|row| {
            Some(match nft {
                Some(nft) if nft > 0.0 && row.key != "nft" => format!("{} Mpps/core, {:.1}× nftables", f2(row.per_core_mpps), row.per_core_mpps / nft),
                _ => format!("{} Mpps/core", f2(row.per_core_mpps)),
            })
        })
        .collect();
    let b = Bars {
        title: "End to end over veth: Mpps per core of the director".into(),
        kind: Kind::Ratio,
        x_desc: "delivered Mpps per CPU-second of the director's NAPI thread (higher is better; ticks: each round)".into(),
        categories: e.rows.iter().map(|r| r.label.replace('`', "")).collect(),
        series: vec![s],
        lines: Vec::new(),
    };
    let svg = bars_svg(&b, caption)?;
    let table = Table {
        header: vec!["director", "offered Mpps", "received Mpps", "delivered Mpps", "director CPU %", "ns/packet", "Mpps per core", "x nftables", "rounds (Mpps per core)"],
        rows: e
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    f2(r.offered_mpps),
                    f2(r.received_mpps),
                    f2(r.delivered_mpps),
                    format!("{:.0}", r.director_cpu * 100.0),
                    if r.per_core_mpps > 0.0 { format!("{:.0}", 1e3 / r.per_core_mpps) } else { String::new() },
                    f2(r.per_core_mpps),
                    nft.filter(|n| *n > 0.0).map_or_else(String::new, |n| f1(r.per_core_mpps / n)),
                    r.rounds_per_core_mpps.iter().map(|v| f2(*v)).collect::<Vec<_>>().join(" "),
                ]
            })
            .collect(),
    };
    let text = format!(
        "A live-frames generator sends {}-byte UDP frames ({} flows) into the director's veth; the director forwards them to \
         a sink namespace. Mpps per core is frames delivered divided by the CPU time of the director's NAPI thread, where all of \
         its packet work runs; best of {} rounds of {:.0} s. nftables (DNAT with <code>numgen</code> and conntrack) runs the same \
         topology in the same run: the × nftables ratio carries over, the Mpps do not.",
        e.frame_len, e.flows, e.rounds, e.secs
    );
    Ok(Some((
        Section { id: "e2e", title: "End to end: Mpps per core".into(), kind: Kind::Ratio, text, svgs: vec!["e2e.svg".into()], table },
        vec![svg_out("e2e.svg", svg)],
    )))
}

fn takeover(r: &Report, caption: &str) -> Built {
    let Some(t) = &r.takeover else { return Ok(None) };
    let mut loads: Vec<(u8, u64)> = Vec::new();
    for c in &t.cases {
        let k = (c.version, c.advert_int_ms.round() as u64);
        if !loads.contains(&k) {
            loads.push(k);
        }
    }
    let mut svgs = Vec::new();
    for (version, adv) in &loads {
        let cases: Vec<_> = t.cases.iter().filter(|c| c.version == *version && c.advert_int_ms.round() as u64 == *adv).collect();
        let md = cases.first().map_or(0.0, |c| c.master_down_ms);
        let cats: Vec<String> = cases.iter().map(|c| c.implementation.clone()).collect();
        let vip = DotSeries {
            name: "VIP on the backup".into(),
            color: KA,
            cross: false,
            points: cases.iter().enumerate().flat_map(|(i, c)| c.vip_ms.iter().map(move |v| (i, *v))).collect(),
        };
        let garp = DotSeries {
            name: "first gratuitous ARP".into(),
            color: ANCHOR,
            cross: true,
            points: cases.iter().enumerate().flat_map(|(i, c)| c.garp_ms.iter().map(move |v| (i, *v))).collect(),
        };
        let notes = cases
            .iter()
            .map(|c| median(&c.vip_ms).map(|m| format!("median {m:.1} ms, {:+.1} ms vs RFC ({} runs)", m - c.master_down_ms, c.vip_ms.len())))
            .collect();
        let d = Dots {
            title: format!("VRRP takeover after SIGKILL of the master: v{version}, advert_int {}", ms_text(*adv as f64)),
            kind: Kind::Ratio,
            x_desc: "ms from the SIGKILL to the VIP on the backup (each dot one run)".into(),
            categories: cats,
            series: vec![vip, garp],
            lines: vec![(md, format!("RFC Master_Down_Interval = 3 × advert_int + skew = {md:.0} ms"))],
            from_zero: false,
            notes,
        };
        let name = format!("takeover-v{version}-{adv}ms.svg");
        svgs.push(svg_out(&name, dots_svg(&d, caption)?));
    }
    let table = Table {
        header: vec!["VRRP", "advert_int ms", "implementation", "Master_Down_Interval ms", "VIP on backup ms (every run)", "median - RFC ms", "first GARP ms (every run)", "GARP missed"],
        rows: t
            .cases
            .iter()
            .map(|c| {
                vec![
                    format!("v{}", c.version),
                    format!("{:.0}", c.advert_int_ms),
                    c.implementation.clone(),
                    format!("{:.0}", c.master_down_ms),
                    c.vip_ms.iter().map(|v| f1(*v)).collect::<Vec<_>>().join(" "),
                    median(&c.vip_ms).map_or_else(String::new, |m| format!("{:+.1}", m - c.master_down_ms)),
                    c.garp_ms.iter().map(|v| f1(*v)).collect::<Vec<_>>().join(" "),
                    c.garp_missed.to_string(),
                ]
            })
            .collect(),
    };
    let text = "A master is killed (SIGKILL, right after one of its adverts) and the backup takes over once its \
                Master_Down_Interval passes: 3 × advert_int + skew, the red line (RFC 3768 §6.1 for v2, RFC 5798 §6.1 for v3). \
                Each dot is one run: the time from the kill to the VIP in the backup's address table (polled every 1 ms), and \
                to its first gratuitous ARP on the bridge. ka and keepalived run in turn in the same run; the distance to the \
                RFC line is the figure."
        .to_owned();
    let names = svgs.iter().map(|o| o.name.clone()).collect();
    Ok(Some((Section { id: "takeover", title: "VRRP takeover time".into(), kind: Kind::Ratio, text, svgs: names, table }, svgs)))
}

fn load_label(instances: u32, advert_int_ms: f64, version: u8) -> String {
    format!("{instances} × {} (v{version})", ms_text(advert_int_ms))
}

fn vrrp_cpu(r: &Report, caption: &str) -> Built {
    let Some(v) = &r.vrrp_cpu else { return Ok(None) };
    let mut loads: Vec<(u32, u64, u8)> = Vec::new();
    for row in &v.rows {
        let k = (row.instances, row.advert_int_ms.round() as u64, row.version);
        if !loads.contains(&k) {
            loads.push(k);
        }
    }
    let find = |l: &(u32, u64, u8), imp: &str| {
        v.rows.iter().find(|r| (r.instances, r.advert_int_ms.round() as u64, r.version) == *l && r.implementation.starts_with(imp))
    };
    let mut cats = Vec::new();
    let (mut ka_v, mut kd_v, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for l in &loads {
        for role in ["master", "backup"] {
            cats.push(format!("{}: {role}", load_label(l.0, l.1 as f64, l.2)));
            let pick = |r: &super::VrrpCpuRow| if role == "master" { r.master_pct } else { r.backup_pct };
            let (k, kd) = (find(l, "ka").map(pick), find(l, "keepalived").map(pick));
            ka_v.push(k);
            kd_v.push(kd);
            notes.push(k.zip(kd).map(|(k, kd)| if kd > 0.0 { format!("{k:.1} %, {:.2}× keepalived", k / kd) } else { format!("{k:.1} %") }));
        }
    }
    let mut ka_s = BarSeries::new("ka", KA, ka_v);
    ka_s.notes = notes;
    let mut kd_s = BarSeries::new("keepalived", ANCHOR, kd_v.clone());
    kd_s.notes = kd_v.iter().map(|v| v.map(|v| format!("{v:.1} %"))).collect();
    let b = Bars {
        title: "VRRP daemon CPU: ka beside keepalived".into(),
        kind: Kind::Ratio,
        x_desc: format!("% of one core (utime + stime over {:.0} s, steady state; lower is better)", v.window_s),
        categories: cats,
        series: vec![ka_s, kd_s],
        lines: Vec::new(),
    };
    let svg = bars_svg(&b, caption)?;
    let table = Table {
        header: vec!["load", "implementation", "master CPU %", "backup CPU %", "adverts/s on the wire", "instances heard", "max gap ms", "state changes", "RSS MiB master", "RSS MiB backup"],
        rows: v
            .rows
            .iter()
            .map(|r| {
                vec![
                    load_label(r.instances, r.advert_int_ms, r.version),
                    r.implementation.clone(),
                    f1(r.master_pct),
                    f1(r.backup_pct),
                    format!("{:.0}", r.adverts_per_s),
                    format!("{}/{}", r.instances_heard, r.instances),
                    f1(r.max_gap_ms),
                    r.state_changes.to_string(),
                    f1(r.master_rss_mib),
                    f1(r.backup_rss_mib),
                ]
            })
            .collect(),
    };
    let text = "The same keepalived.conf run by a ka pair and by a keepalived 2.2 pair in turn, in the same run; CPU of every \
                process of each daemon over the window, once the master holds every VIP. A row compares fairly only when every \
                instance is heard at its rate and no state changed (see the table)."
        .to_owned();
    Ok(Some((Section { id: "vrrp-cpu", title: "VRRP daemon CPU".into(), kind: Kind::Ratio, text, svgs: vec!["vrrp-cpu.svg".into()], table }, vec![svg_out("vrrp-cpu.svg", svg)])))
}

fn health(r: &Report, caption: &str) -> Built {
    let Some(h) = &r.health else { return Ok(None) };
    let mut kinds: Vec<&str> = Vec::new();
    for row in &h.rows {
        if !kinds.contains(&row.kind.as_str()) {
            kinds.push(&row.kind);
        }
    }
    let lo = h.rows.iter().map(|r| f64::from(r.checkers)).fold(f64::MAX, f64::min).max(1.0);
    let hi = h.rows.iter().map(|r| f64::from(r.checkers)).fold(1.0, f64::max);
    let ymax = h.rows.iter().flat_map(|r| [r.cpu_pct, r.napi_cpu_pct]).fold(1.0, f64::max) * 1.25;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        let body = frame(&root, "Health-check CPU by checker count", Kind::Absolute, &[], caption)?;
        let mut chart = ChartBuilder::on(&body)
            .margin_left(8)
            .margin_right(30)
            .margin_top(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo / 1.6..hi * 1.6).log_scale(), 0.0..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(format!("checkers (real servers, delay_loop {:.0} s; log scale)", h.delay_loop_s))
            .y_desc("% of one core")
            .axis_desc_style((FONT, 13))
            .label_style((FONT, 12))
            // Only 1, 2 and 5 times a power of ten: the log axis' other ticks crowd.
            .x_label_formatter(&|v| {
                let lead = v / 10f64.powf(v.log10().floor());
                if [1.0, 2.0, 5.0].iter().any(|l| (lead - l).abs() < 1e-6) {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(plot_err)?;
        let palette = [KA, PURPLE, GREEN, RED];
        for (i, kind) in kinds.iter().enumerate() {
            let color = palette[i % palette.len()];
            let mut rows: Vec<_> = h.rows.iter().filter(|r| r.kind == *kind).collect();
            rows.sort_by_key(|r| r.checkers);
            let name = if *kind == "http" { "HTTP_GET" } else if *kind == "tcp" { "TCP_CHECK" } else { kind };
            chart
                .draw_series(LineSeries::new(rows.iter().map(|r| (f64::from(r.checkers), r.cpu_pct)), color.stroke_width(2)).point_size(4))
                .map_err(plot_err)?
                .label(format!("{name}: daemon"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart
                .draw_series(DashedLineSeries::new(rows.iter().map(|r| (f64::from(r.checkers), r.napi_cpu_pct)), 6, 4, color.mix(0.6).stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{name}: receive processing, both veth ends"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.mix(0.6).stroke_width(1)));
            for r in &rows {
                let p = chart.backend_coord(&(f64::from(r.checkers), r.cpu_pct));
                let failed = if r.failed > 0 { format!(", {} checks failed", r.failed) } else { String::new() };
                root.draw(&Text::new(format!("{:.1} %{failed}", r.cpu_pct), (p.0 + 6, p.1 - 4), (FONT, 12).into_font().color(&color).pos(Pos::new(HPos::Left, VPos::Bottom))))
                    .map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.2))
            .label_font((FONT, 13))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    let table = Table {
        header: vec!["checker", "checkers", "checks/s", "daemon CPU %", "failed in window", "start lateness p99 ms", "max ms", "receive processing %"],
        rows: h
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.kind.clone(),
                    r.checkers.to_string(),
                    format!("{:.0}", r.checks_per_s),
                    f1(r.cpu_pct),
                    r.failed.to_string(),
                    f1(r.late_p99_ms),
                    f1(r.late_max_ms),
                    f1(r.napi_cpu_pct),
                ]
            })
            .collect(),
    };
    let text = format!(
        "ka's checkers against nginx real servers in a namespace, every checker once per delay_loop; daemon CPU (utime + stime) \
         over {:.0} s. Threaded NAPI moves each veth end's receive processing into a kernel thread of its own, shown dashed: on \
         real hardware it would run in the NIC's softirq. No anchor runs beside it: absolute figures.",
        h.window_s
    );
    Ok(Some((Section { id: "health", title: "Health-check CPU".into(), kind: Kind::Absolute, text, svgs: vec!["health.svg".into()], table }, vec![svg_out("health.svg", svg)])))
}

fn reload(r: &Report, caption: &str) -> Built {
    let Some(rl) = &r.reload else { return Ok(None) };
    let label = |row: &super::ReloadRow| format!("{}, {}", row.trigger, row.config);
    let mut time = BarSeries::new("reload time", KA, rl.rows.iter().map(|r| Some(r.took_ms / 1000.0)).collect());
    time.notes = rl.rows.iter().map(|r| Some(ms_text(r.took_ms))).collect();
    let b = Bars {
        title: "Live reload: request to applied".into(),
        kind: Kind::Absolute,
        x_desc: "seconds (`ka reload` until it returns, or SIGHUP until `reload applied`)".into(),
        categories: rl.rows.iter().map(label).collect(),
        series: vec![time],
        lines: Vec::new(),
    };
    let time_svg = bars_svg(&b, caption)?;
    let mut cats = Vec::new();
    let mut series: Vec<DotSeries> = [("median gap", GREEN, false), ("p99", KA, false), ("p99.9", PURPLE, false), ("largest", RED, true)]
        .into_iter()
        .map(|(name, color, cross)| DotSeries { name: name.into(), color, cross, points: Vec::new() })
        .collect();
    let mut notes = Vec::new();
    for row in &rl.rows {
        for (when, g) in [("steady", &row.steady), ("during", &row.during)] {
            let ci = cats.len();
            cats.push(format!("{when}: {}", label(row)));
            let adv = row.advert_int_ms.max(1e-9);
            for (s, v) in series.iter_mut().zip([g.p50_ms, g.p99_ms, g.p999_ms, g.max_ms]) {
                s.points.push((ci, v / adv));
            }
            notes.push(Some(format!("{} late of {}", g.late, g.gaps)));
        }
    }
    let d = Dots {
        title: "Advert gaps before and during a reload, in advert intervals".into(),
        kind: Kind::Ratio,
        x_desc: "gap between one instance's consecutive adverts ÷ its advert_int (1.0 = on time)".into(),
        categories: cats,
        series,
        lines: vec![(1.5, "late: 1.5 ×".into()), (3.0, "3 × advert_int (a backup's Master_Down_Interval is 3 × + skew)".into())],
        from_zero: true,
        notes,
    };
    let gaps_svg = dots_svg(&d, caption)?;
    let table = Table {
        header: vec![
            "configuration", "change", "asked by", "reload ms", "advert_int ms", "steady: p50/p99/p99.9/max ms", "steady late/gaps", "during: p50/p99/p99.9/max ms", "during late/gaps", "instances heard",
        ],
        rows: rl
            .rows
            .iter()
            .map(|r| {
                let q = |g: &super::Gaps| format!("{} / {} / {} / {}", f1(g.p50_ms), f1(g.p99_ms), f1(g.p999_ms), f1(g.max_ms));
                vec![
                    r.config.clone(),
                    r.change.clone(),
                    r.trigger.clone(),
                    format!("{:.0}", r.took_ms),
                    format!("{:.0}", r.advert_int_ms),
                    q(&r.steady),
                    format!("{}/{}", r.steady.late, r.steady.gaps),
                    q(&r.during),
                    format!("{}/{}", r.during.late, r.during.gaps),
                    r.during.instances.to_string(),
                ]
            })
            .collect(),
    };
    let text = "Each configuration is reloaded with a change, then back. The reload time is absolute. The adverts of every \
                instance are captured on the peer side of the wire with kernel timestamps; their gaps are shown in advert \
                intervals, steady (the seconds before the request) beside during (from the request to one interval after it \
                was applied): that comparison is made within one run. A gap past 3 intervals would let a backup take over."
        .to_owned();
    Ok(Some((
        Section { id: "reload", title: "Live reload: time and advert gaps".into(), kind: Kind::Absolute, text, svgs: vec!["reload-time.svg".into(), "reload-gaps.svg".into()], table },
        vec![svg_out("reload-time.svg", time_svg), svg_out("reload-gaps.svg", gaps_svg)],
    )))
}

fn directors(r: &Report, caption: &str) -> Built {
    let Some(d) = &r.directors else { return Ok(None) };
    let one = d.rows.iter().find(|r| r.directors == 1).map(|r| r.delivered_mpps);
    let mut s = BarSeries::new("delivered", KA, d.rows.iter().map(|r| Some(r.delivered_mpps)).collect());
    s.notes = d
        .rows
        .iter()
        .map(|r| Some(one.filter(|o| *o > 0.0).map_or_else(|| format!("{} Mpps", f2(r.delivered_mpps)), |o| format!("{} Mpps, {:.2}× one director", f2(r.delivered_mpps), r.delivered_mpps / o))))
        .collect();
    let b = Bars {
        title: "Throughput with 1, 2 and 3 active-active directors (BGP/ECMP)".into(),
        kind: Kind::Ratio,
        x_desc: "delivered Mpps, all directors together (higher is better)".into(),
        categories: d.rows.iter().map(|r| format!("{} director{}", r.directors, if r.directors == 1 { "" } else { "s" })).collect(),
        series: vec![s],
        lines: Vec::new(),
    };
    let svg = bars_svg(&b, caption)?;
    let table = Table {
        header: vec!["directors", "delivered Mpps", "x one director", "directors' CPU (cores)"],
        rows: d
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.directors.to_string(),
                    f2(r.delivered_mpps),
                    one.filter(|o| *o > 0.0).map_or_else(String::new, |o| f2(r.delivered_mpps / o)),
                    r.cpu_cores.map_or_else(String::new, f2),
                ]
            })
            .collect(),
    };
    let text = format!("{} The scaling factor (× one director, same run) is the figure.", esc(&d.method));
    Ok(Some((Section { id: "directors", title: "Director scaling".into(), kind: Kind::Ratio, text, svgs: vec!["directors.svg".into()], table }, vec![svg_out("directors.svg", svg)])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Report {
        serde_json::from_str(include_str!("../../tests/fixtures/report.json")).expect("fixture parses")
    }

    fn file<'a>(files: &'a [Output], name: &str) -> &'a str {
        &files.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} not rendered; got {:?}", files.iter().map(|f| &f.name).collect::<Vec<_>>())).text
    }

    /// Every section of the fixture renders its plots, with the series, labels, anchors and
    /// the machine caption in them, and the page links each plot and CSV.
    #[test]
    fn fixture_renders_every_plot() {
        let r = fixture();
        let files = render(&r).expect("render");
        let caption = r.machine.caption(&r.date);
        let expect: &[(&str, &[&str])] = &[
            ("xdp-vs-reference.svg", &["reference XDP LB", "ka", "established flow", "× the reference"]),
            ("xdp-paths.svg", &["× floor", "VRRPv3 advert"]),
            ("e2e.svg", &["ka DR", "ka NAT", "ka TUN", "nftables", "× nftables", "floor"]),
            ("takeover-v2-1000ms.svg", &["keepalived", "ka", "RFC Master_Down_Interval", "3609 ms", "first gratuitous ARP"]),
            ("takeover-v3-50ms.svg", &["RFC Master_Down_Interval", "180 ms"]),
            ("vrrp-cpu.svg", &["keepalived", "× keepalived", "master", "backup"]),
            ("health.svg", &["TCP_CHECK: daemon", "HTTP_GET: daemon", "receive processing"]),
            ("reload-time.svg", &["SIGHUP", "ka reload"]),
            ("reload-gaps.svg", &["late: 1.5", "during", "steady", "largest"]),
            ("directors.svg", &["3 directors", "× one director"]),
        ];
        for (name, needles) in expect {
            let svg = file(&files, name);
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name} is not a whole SVG");
            assert!(svg.contains(&esc_xml(&caption)), "{name} does not name the machine and date: {caption}");
            for n in *needles {
                assert!(svg.contains(&esc_xml(n)), "{name} lacks {n:?}");
            }
            // Something was drawn: bars, dots or lines, not just the frame.
            assert!(svg.matches("<rect").count() + svg.matches("<circle").count() + svg.matches("<polyline").count() > 4, "{name} has nothing plotted");
        }
        let html = file(&files, "index.html");
        for (name, _) in expect {
            assert!(html.contains(&format!("src=\"{name}\"")), "index.html does not show {name}");
        }
        for id in ["xdp", "e2e", "takeover", "vrrp-cpu", "health", "reload", "directors"] {
            assert!(html.contains(&format!("href=\"{id}.csv\"")), "index.html does not link {id}.csv");
            let csv = file(&files, &format!("{id}.csv"));
            assert!(csv.lines().count() >= 2, "{id}.csv has no rows");
        }
        assert!(html.contains("ratio in one run") && html.contains("absolute"), "the page must say which figures are which");
        assert!(html.contains(&r.machine.cpu_model) && html.contains(&r.date));
        let back: Report = serde_json::from_str(file(&files, "report.json")).expect("report.json parses");
        assert_eq!(back, r, "report.json is the data the plots were drawn from");
        // Deterministic: the same data renders the same bytes.
        assert_eq!(render(&r).expect("render"), files);
    }

    /// A report with only some benchmarks renders only their sections, and an empty one still
    /// renders a page that says so.
    #[test]
    fn partial_and_empty_reports() {
        let mut r = fixture();
        r.takeover = None;
        r.directors = None;
        r.xdp.as_mut().expect("xdp").reference.clear();
        r.xdp.as_mut().expect("xdp").reference_note = Some("clang-22 missing".into());
        let files = render(&r).expect("render");
        assert!(!files.iter().any(|f| f.name.starts_with("takeover") || f.name.starts_with("directors")));
        assert!(!files.iter().any(|f| f.name == "xdp-vs-reference.svg"));
        assert!(file(&files, "index.html").contains("clang-22 missing"));
        let empty = Report { schema: crate::report::SCHEMA, date: "2026-01-01T00:00:00Z".into(), ..Report::default() };
        let files = render(&empty).expect("render");
        assert!(file(&files, "index.html").contains("No benchmark results"));
    }

    /// CSV fields with commas and quotes are quoted.
    #[test]
    fn csv_quoting() {
        let t = Table { header: vec!["a", "b"], rows: vec![vec!["x, y".into(), "say \"hi\"".into()]] };
        assert_eq!(t.csv(), "a,b\n\"x, y\",\"say \"\"hi\"\"\"\n");
    }

    fn esc_xml(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    }
}
