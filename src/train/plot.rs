//! Pictures of a training run, as Keras users draw them with matplotlib: the [`History`]
//! of a [`fit`](super::Trainer::fit) as one chart with a panel per value
//! ([`plot_history`]), and a [`ConfusionMatrix`] as a heat map, as scikit-learn's
//! `ConfusionMatrixDisplay` ([`plot_confusion_matrix`]). Each picture is written twice,
//! as `<stem>.svg` and `<stem>.png`. Built with the `plot` feature (`--features plot`).
//!
//! ```
//! use wgrad::metrics::ConfusionMatrix;
//! use wgrad::train::plot::{plot_confusion_matrix, plot_history};
//! use wgrad::train::{History, Logs};
//!
//! // `trainer.fit(...)` returns a History; here, two epochs written by hand.
//! let mut history = History::default();
//! for (loss, val_loss) in [(0.9, 0.8), (0.5, 0.6)] {
//!     history.push(&Logs::from([("loss".to_string(), loss), ("val_loss".to_string(), val_loss)]));
//! }
//! let dir = std::env::temp_dir().join(format!("wgrad-plot-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let written = plot_history(&history, dir.join("history"))?;
//! assert_eq!(written, [dir.join("history.svg"), dir.join("history.png")]);
//!
//! let mut cm = ConfusionMatrix::new(3);
//! cm.update(&[0, 1, 1, 2], &[0, 1, 2, 2]);
//! plot_confusion_matrix(&cm, dir.join("confusion"), Some(&["cat", "dog", "bird"]))?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), wgrad::Error>(())
//! ```
//!
//! Each picture is one drawing function, generic over plotters' backends, run twice: into
//! an SVG string and into an RGB buffer that the `png` crate encodes. Both are drawn
//! before either file is written, and each file is written atomically (a temporary file
//! in the same folder, then a rename), so a failure leaves an existing picture whole.
//!
//! Text in the PNG is rasterised from DejaVu Sans, embedded in the library
//! (`assets/fonts`, with its licence), so no system font is looked up and nothing is
//! needed at run time: a bare machine without fontconfig draws the same picture. The
//! font is registered with plotters as `sans-serif` on first use, unless the program has
//! registered its own; the SVG names `sans-serif` and leaves the text to the viewer.
//!
//! An epoch that did not log a value (NaN in the history, such as `val_loss` in an epoch
//! without validation) leaves a gap in its line, as matplotlib draws NaN; it is never
//! drawn as zero.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::History;
use crate::checkpoint::write_atomically;
use crate::metrics::ConfusionMatrix;
use crate::{Error, Result};

/// The chart of `history`: a panel for the loss, one for each metric, and one for the
/// learning rate (`lr`, and each `lr_group{i}` of [`LrLogger`](super::LrLogger)), on a
/// log scale when the rates are positive and span a factor of 10 or more. A panel shows
/// the training value (`loss`, `accuracy`) and the validation value (`val_loss`,
/// `val_accuracy`) as two series named in its legend, against the epoch counted from 1;
/// panels go three to a row.
///
/// Writes `<path_stem>.svg` and `<path_stem>.png` (a stem that already ends in `.svg` or
/// `.png` loses that extension first) and returns their paths, SVG first. A history of
/// no epochs, or with no finite value at all, is an [`Error::Plot`]; a file that cannot
/// be written is an [`Error::Io`] naming it.
pub fn plot_history(history: &History, path_stem: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let stem = path_stem.as_ref();
    let nothing = |reason: &str| Error::Plot { path: stem.display().to_string(), reason: reason.to_string() };
    if history.epochs() == 0 {
        return Err(nothing("the history has no epochs: nothing to plot"));
    }
    let panels = history_panels(history);
    if panels.is_empty() {
        return Err(nothing("the history has no finite value: nothing to plot"));
    }
    write_picture(&HistoryPicture { panels, epochs: history.epochs() }, stem)
}

/// The heat map of `cm`, as scikit-learn's `ConfusionMatrixDisplay`: true classes down
/// the side (row 0 at the top), predicted classes across the bottom, each cell's count
/// written in it, and a colour bar (viridis, from the smallest count to the largest).
/// Classes are labelled by `class_names`, else by the matrix's own names
/// ([`ConfusionMatrix::with_class_names`]), else by their indices; a name too long for its
/// column is shortened there with an ellipsis.
///
/// Writes `<path_stem>.svg` and `<path_stem>.png` and returns their paths, as
/// [`plot_history`]. Panics when `class_names` has another length than the matrix has
/// classes.
pub fn plot_confusion_matrix(
    cm: &ConfusionMatrix,
    path_stem: impl AsRef<Path>,
    class_names: Option<&[&str]>,
) -> Result<Vec<PathBuf>> {
    let n = cm.num_classes();
    let names: Vec<String> = match class_names {
        Some(names) => {
            assert_eq!(
                names.len(),
                n,
                "plot_confusion_matrix: {} class names for a matrix of {n} classes",
                names.len()
            );
            names.iter().map(|s| s.to_string()).collect()
        }
        None => (0..n).map(|c| cm.class_name(c)).collect(),
    };
    register_font();
    write_picture(&MatrixPicture::new(cm, names), path_stem.as_ref())
}

/// The family every text is drawn in. The SVG names it too, so a viewer uses its own.
const FONT: &str = "sans-serif";

/// DejaVu Sans 2.37; its licence is `assets/fonts/DejaVuSans-LICENSE`.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif`, once per process, unless the
/// program has registered a font of that name itself.
fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if FontDesc::new(FontFamily::SansSerif, 12.0, FontStyle::Normal).box_size("x").is_ok() {
            return;
        }
        if plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_err() {
            panic!("plot: the embedded DejaVu Sans font does not parse");
        }
    });
}

/// matplotlib's default colour cycle (`tab10`): training is its first colour, validation
/// its second.
const TAB10: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Light grey of the grid lines and the legend's frame.
const GRID: RGBColor = RGBColor(225, 225, 225);

/// A picture drawn the same way on any of plotters' backends.
trait Picture {
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draws `picture` as SVG and as PNG, then writes both; their paths, SVG first.
fn write_picture(picture: &impl Picture, stem: &Path) -> Result<Vec<PathBuf>> {
    let (svg_path, png_path) = picture_paths(stem)?;
    register_font();
    let (width, height) = picture.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        picture.draw(&root).and_then(|()| root.present()).map_err(|e| plot_error(&svg_path, e))?;
    }
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        picture.draw(&root).and_then(|()| root.present()).map_err(|e| plot_error(&png_path, e))?;
    }
    let png = encode_png(&rgb, width, height).map_err(|e| plot_error(&png_path, e))?;
    write_atomically(&svg_path, svg.as_bytes())?;
    write_atomically(&png_path, &png)?;
    Ok(vec![svg_path, png_path])
}

/// `<stem>.svg` and `<stem>.png`, after dropping an `.svg` or `.png` the stem ends in.
fn picture_paths(stem: &Path) -> Result<(PathBuf, PathBuf)> {
    let stem = match stem.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("svg") || ext.eq_ignore_ascii_case("png") => stem.with_extension(""),
        _ => stem.to_path_buf(),
    };
    let Some(name) = stem.file_name() else {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
        return Err(Error::Io { path: stem.display().to_string(), source });
    };
    let with_extension = |ext: &str| {
        let mut file = name.to_os_string();
        file.push(".");
        file.push(ext);
        stem.with_file_name(file)
    };
    Ok((with_extension("svg"), with_extension("png")))
}

fn plot_error(path: &Path, reason: impl Display) -> Error {
    Error::Plot { path: path.display().to_string(), reason: reason.to_string() }
}

/// An 8-bit RGB PNG of `rgb` (row-major, 3 bytes a pixel).
fn encode_png(rgb: &[u8], width: u32, height: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

// ---- The history chart ----

/// One panel's pixels.
const PANEL_SIZE: (u32, u32) = (480, 360);
const PANELS_PER_ROW: usize = 3;
/// Up to this many epochs every value gets a marker; beyond, only a value between two
/// missing ones does (it would have no line to show it).
const MARKERS_UP_TO: usize = 50;

/// One named value of the history, one entry per epoch.
struct Series<'a> {
    name: &'a str,
    values: &'a [f64],
    color: RGBColor,
}

struct Panel<'a> {
    title: String,
    series: Vec<Series<'a>>,
    log_scale: bool,
}

/// The panels of `history`: `loss`, then the other values alphabetically, each with its
/// `val_` twin, then the learning rates. Series with no finite value are left out, and
/// panels left with none.
fn history_panels(history: &History) -> Vec<Panel<'_>> {
    let finite = |name: &str| history.get(name).is_some_and(|v| v.iter().any(|x| x.is_finite()));
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut rates = Vec::new();
    for name in history.names().filter(|&name| finite(name)) {
        if name == "lr" || name.starts_with("lr_") {
            rates.push(name);
        } else {
            groups.entry(name.strip_prefix("val_").unwrap_or(name)).or_default().push(name);
        }
    }
    let mut panels = Vec::new();
    let loss_first = groups.remove_entry("loss").into_iter().chain(groups);
    for (base, mut names) in loss_first {
        // The training value first, then `val_<base>`.
        names.sort_by_key(|&name| name != base);
        let series = names
            .into_iter()
            .map(|name| {
                let color = if name == base { TAB10[0] } else { TAB10[1] };
                Series { name, values: history.get(name).expect("a logged name"), color }
            })
            .collect();
        panels.push(Panel { title: base.to_string(), series, log_scale: false });
    }
    if !rates.is_empty() {
        // `lr` first, then `lr_group1`, `lr_group2`, ... in numeric order.
        rates.sort_by_key(|name| (name.len(), *name));
        let series: Vec<Series> = rates
            .into_iter()
            .enumerate()
            .map(|(i, name)| Series {
                name,
                values: history.get(name).expect("a logged name"),
                color: TAB10[i % TAB10.len()],
            })
            .collect();
        let (lo, hi) = finite_range(&series);
        panels.push(Panel { title: "learning rate".into(), series, log_scale: lo > 0.0 && hi >= 10.0 * lo });
    }
    panels
}

/// The smallest and largest finite value of `series`.
fn finite_range(series: &[Series]) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.values).copied().filter(|v| v.is_finite());
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// The runs of consecutive finite values of `values` as `(epoch, value)` points, epochs
/// counted from 1: each run is one line, and a missing value splits them.
fn finite_runs(values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for (epoch, &v) in values.iter().enumerate() {
        if v.is_finite() {
            run.push(((epoch + 1) as f64, v));
        } else if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

struct HistoryPicture<'a> {
    panels: Vec<Panel<'a>>,
    epochs: usize,
}

impl HistoryPicture<'_> {
    /// Columns and rows of panels.
    fn grid(&self) -> (usize, usize) {
        let columns = self.panels.len().min(PANELS_PER_ROW);
        (columns, self.panels.len().div_ceil(columns))
    }
}

impl Picture for HistoryPicture<'_> {
    fn size(&self) -> (u32, u32) {
        let (columns, rows) = self.grid();
        (PANEL_SIZE.0 * columns as u32, PANEL_SIZE.1 * rows as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (columns, rows) = self.grid();
        for (panel, area) in self.panels.iter().zip(root.split_evenly((rows, columns))) {
            draw_panel(&area, panel, self.epochs)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel, epochs: usize) -> DrawResult<DB> {
    // matplotlib's 5% margins on either side, and room for the one point of one epoch.
    let x_margin = if epochs > 1 { 0.05 * (epochs - 1) as f64 } else { 0.5 };
    let x_range = (1.0 - x_margin)..(epochs as f64 + x_margin);
    let (lo, hi) = finite_range(&panel.series);
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, (FONT, 20)).margin(12).x_label_area_size(44).y_label_area_size(68);
    if panel.log_scale {
        let pad = (hi / lo).powf(0.05);
        let chart = builder.build_cartesian_2d(x_range, ((lo / pad)..(hi * pad)).log_scale())?;
        let position = (lo.ln(), hi.ln());
        draw_series(chart, panel, epochs, &|v| format!("{v:.0e}"), |v| {
            (v.ln() - position.0) / (position.1 - position.0)
        })
    } else {
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.05 * lo.abs().max(1e-3) };
        let (lo, hi) = (lo - pad, hi + pad);
        let chart = builder.build_cartesian_2d(x_range, lo..hi)?;
        let label = value_label(lo, hi);
        draw_series(chart, panel, epochs, &label, |v| (v - lo) / (hi - lo))
    }
}

/// How the ticks of a linear axis over `lo..hi` are written: enough decimals to tell
/// about six ticks apart, or scientific notation for tiny and huge values (rates).
fn value_label(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let magnitude = lo.abs().max(hi.abs());
    let scientific = !(1e-2..1e5).contains(&magnitude);
    let step = (hi - lo) / 6.0;
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize }.min(8);
    // The mantissa's decimals: as many as the tick step lies orders of magnitude below
    // the largest value, so a narrow range of rates (2.95e-3 to 3.05e-3) is told apart.
    let mantissa = if step > 0.0 { (magnitude.log10().floor() - step.log10().floor()).clamp(1.0, 6.0) } else { 1.0 };
    let mantissa = mantissa as usize;
    move |v: &f64| {
        if scientific {
            format!("{v:.mantissa$e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// The axes, the series and the legend of one panel. `height` maps a value to its height
/// in the panel, 0 at the bottom and 1 at the top, to keep the legend off the lines' ends.
fn draw_series<'a, DB: DrawingBackend + 'a, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Panel,
    epochs: usize,
    y_label: &dyn Fn(&f64) -> String,
    height: impl Fn(f64) -> f64,
) -> DrawResult<DB>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let epoch_label = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(epochs.clamp(2, 10))
        .x_label_formatter(&epoch_label)
        .y_labels(6)
        .y_label_formatter(y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()?;
    for series in &panel.series {
        let color = series.color;
        let runs = finite_runs(series.values);
        for run in runs.iter().filter(|run| run.len() > 1) {
            chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
        }
        let marked = runs.iter().filter(|run| epochs <= MARKERS_UP_TO || run.len() == 1).flatten().copied();
        chart
            .draw_series(marked.map(|point| Circle::new(point, 3, color.filled())))?
            .label(series.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    // matplotlib's "best", roughly: away from where the first series ends.
    let last = panel.series[0].values.iter().rev().copied().find(|v| v.is_finite());
    let position = match last {
        Some(v) if height(v) > 0.5 => SeriesLabelPosition::LowerRight,
        _ => SeriesLabelPosition::UpperRight,
    };
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .draw()
}

// ---- The confusion matrix ----

/// matplotlib's viridis at nine evenly spaced points, from 0 to 1.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (0x44, 0x01, 0x54),
    (0x47, 0x2d, 0x7b),
    (0x3b, 0x52, 0x8b),
    (0x2c, 0x72, 0x8e),
    (0x21, 0x91, 0x8c),
    (0x28, 0xae, 0x80),
    (0x5e, 0xc9, 0x62),
    (0xad, 0xdc, 0x30),
    (0xfd, 0xe7, 0x25),
];

/// Viridis at `t` in `0..=1`, interpolated linearly between its nine points.
fn viridis(t: f64) -> RGBColor {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

const MARGIN: i32 = 16;
const TITLE_SIZE: f64 = 20.0;
const LABEL_SIZE: f64 = 14.0;
const DESC_SIZE: f64 = 16.0;
const TICK: i32 = 5;
/// Width of the colour bar, and the gap between it and the matrix.
const BAR_WIDTH: i32 = 20;
const BAR_GAP: i32 = 24;
/// The widest a column grows to fit its class name.
const MAX_CELL: i32 = 160;

/// The width of `text` in pixels at `size`, in the font the picture is drawn with.
fn text_width(text: &str, size: f64) -> i32 {
    let font = FontDesc::new(FontFamily::Name(FONT), size, FontStyle::Normal);
    // Without a font, an estimate: the picture then fails where it draws its first text.
    font.box_size(text).map_or((text.chars().count() as f64 * size * 0.6) as i32, |(w, _)| w as i32)
}

/// `text`, shortened with an ellipsis to at most `width` pixels at `size`.
fn fit_text(text: &str, width: i32, size: f64) -> String {
    if text_width(text, size) <= width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len())
        .rev()
        .map(|keep| format!("{}…", chars[..keep].iter().collect::<String>()))
        .find(|short| text_width(short, size) <= width)
        .unwrap_or_else(|| "…".to_string())
}

/// Up to about six round values (1, 2 or 5 times a power of ten, at least 1) from `lo`
/// to `hi`, for the colour bar's ticks.
fn count_ticks(lo: u64, hi: u64) -> Vec<u64> {
    let span = (hi - lo).max(1) as f64;
    let power = 10f64.powf((span / 6.0).log10().floor().max(0.0));
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| span / s <= 6.0).unwrap_or(10.0 * power);
    let step = step as u64;
    (lo.div_ceil(step) * step..=hi).step_by(step as usize).collect()
}

/// Where everything of the confusion matrix goes, in pixels, worked out once from the
/// class names and the counts.
struct MatrixPicture<'a> {
    cm: &'a ConfusionMatrix,
    /// Full names, down the side.
    row_names: Vec<String>,
    /// Names fitted to a column, across the bottom.
    column_names: Vec<String>,
    cell: i32,
    /// The matrix's top-left corner.
    left: i32,
    top: i32,
    count_size: f64,
    /// The smallest and largest count: the ends of the colour scale.
    range: (u64, u64),
    size: (u32, u32),
}

impl<'a> MatrixPicture<'a> {
    fn new(cm: &'a ConfusionMatrix, names: Vec<String>) -> MatrixPicture<'a> {
        let n = cm.num_classes() as i32;
        let counts = cm.counts();
        let range = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
        let widest_name = names.iter().map(|name| text_width(name, LABEL_SIZE)).max().unwrap_or(0);
        // Square cells, the matrix at least 400 pixels across, a column wide enough for
        // its name up to MAX_CELL.
        let cell = (400 / n).max(24).max((widest_name + 8).min(MAX_CELL));
        let widest_count = counts.iter().map(|c| c.to_string().chars().count()).max().unwrap_or(1);
        // A count takes at most a third of its cell's height and fits its width.
        let count_size = (cell as f64 * 0.35).min(20.0).min((cell - 6) as f64 / (0.65 * widest_count as f64));
        let column_names = names.iter().map(|name| fit_text(name, cell - 4, LABEL_SIZE)).collect();
        let text_height = |size: f64| size.ceil() as i32 + 4;
        let left = MARGIN + text_height(DESC_SIZE) + 8 + widest_name + 3 + TICK;
        let top = MARGIN + text_height(TITLE_SIZE) + 8;
        let side = n * cell;
        let bottom = TICK + 3 + text_height(LABEL_SIZE) + 8 + text_height(DESC_SIZE) + MARGIN;
        let widest_tick = count_ticks(range.0, range.1).iter().map(|t| text_width(&t.to_string(), LABEL_SIZE)).max();
        let right = BAR_GAP + BAR_WIDTH + TICK + 3 + widest_tick.unwrap_or(0) + MARGIN;
        MatrixPicture {
            cm,
            row_names: names,
            column_names,
            cell,
            left,
            top,
            count_size,
            range,
            size: ((left + side + right) as u32, (top + side + bottom) as u32),
        }
    }

    /// A count's place on the colour scale, 0 to 1 (0 for every count when all are equal).
    fn scale(&self, count: u64) -> f64 {
        let (lo, hi) = self.range;
        if hi == lo {
            0.0
        } else {
            (count - lo) as f64 / (hi - lo) as f64
        }
    }
}

impl Picture for MatrixPicture<'_> {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let n = self.cm.num_classes();
        let (cell, left, top) = (self.cell, self.left, self.top);
        let side = n as i32 * cell;
        let centre = |i: usize| i as i32 * cell + cell / 2;
        let text = |size: f64, h: HPos, v: VPos| TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v));

        root.draw(&Text::new(
            "Confusion matrix",
            (left + side / 2, MARGIN),
            text(TITLE_SIZE, HPos::Center, VPos::Top),
        ))?;
        // As scikit-learn: a dark cell's count is written in the scale's brightest colour,
        // a bright cell's in its darkest.
        let (lo, hi) = self.range;
        let threshold = (lo + hi) as f64 / 2.0;
        for t in 0..n {
            for p in 0..n {
                let count = self.cm.count(t, p);
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], viridis(self.scale(count)).filled()))?;
                let ink = if (count as f64) < threshold { viridis(1.0) } else { viridis(0.0) };
                let style = text(self.count_size, HPos::Center, VPos::Center).color(&ink);
                root.draw(&Text::new(count.to_string(), (left + centre(p), top + centre(t)), style))?;
            }
        }
        root.draw(&Rectangle::new([(left, top), (left + side, top + side)], BLACK))?;

        for (i, (row, column)) in self.row_names.iter().zip(&self.column_names).enumerate() {
            let (x, y) = (left + centre(i), top + centre(i));
            root.draw(&PathElement::new(vec![(left - TICK, y), (left, y)], BLACK))?;
            root.draw(&Text::new(row.as_str(), (left - TICK - 3, y), text(LABEL_SIZE, HPos::Right, VPos::Center)))?;
            root.draw(&PathElement::new(vec![(x, top + side), (x, top + side + TICK)], BLACK))?;
            let below = (x, top + side + TICK + 3);
            root.draw(&Text::new(column.as_str(), below, text(LABEL_SIZE, HPos::Center, VPos::Top)))?;
        }
        let (_, height) = self.size;
        let predicted = (left + side / 2, height as i32 - MARGIN);
        root.draw(&Text::new("Predicted label", predicted, text(DESC_SIZE, HPos::Center, VPos::Bottom)))?;
        let sideways = text(DESC_SIZE, HPos::Center, VPos::Top).transform(FontTransform::Rotate270);
        root.draw(&Text::new("True label", (MARGIN, top + side / 2), sideways))?;

        // The colour bar: the largest count at the top.
        let bar = left + side + BAR_GAP;
        let slices = side.clamp(1, 128);
        for s in 0..slices {
            let (y0, y1) = (top + side * s / slices, top + side * (s + 1) / slices);
            let color = viridis(1.0 - (s as f64 + 0.5) / slices as f64);
            root.draw(&Rectangle::new([(bar, y0), (bar + BAR_WIDTH, y1)], color.filled()))?;
        }
        root.draw(&Rectangle::new([(bar, top), (bar + BAR_WIDTH, top + side)], BLACK))?;
        for tick in count_ticks(lo, hi) {
            let y = top + side - (self.scale(tick) * side as f64).round() as i32;
            root.draw(&PathElement::new(vec![(bar + BAR_WIDTH, y), (bar + BAR_WIDTH + TICK, y)], BLACK))?;
            let at = (bar + BAR_WIDTH + TICK + 3, y);
            root.draw(&Text::new(tick.to_string(), at, text(LABEL_SIZE, HPos::Left, VPos::Center)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Logs;

    #[test]
    fn finite_runs_split_at_missing_values() {
        let nan = f64::NAN;
        assert_eq!(
            finite_runs(&[nan, 1.0, 2.0, nan, f64::INFINITY, 3.0]),
            [vec![(2.0, 1.0), (3.0, 2.0)], vec![(6.0, 3.0)]]
        );
        assert!(finite_runs(&[nan, nan]).is_empty());
    }

    #[test]
    fn panels_put_loss_first_and_the_rates_last() {
        let mut history = History::default();
        let names = ["val_mae", "lr_group10", "mae", "lr", "val_loss", "lr_group2", "loss", "accuracy"];
        history.push(&names.iter().map(|n| (n.to_string(), 1.0)).collect::<Logs>());
        let panels = history_panels(&history);
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["loss", "accuracy", "mae", "learning rate"]);
        let series = |p: usize| panels[p].series.iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(series(0), ["loss", "val_loss"]);
        assert_eq!(series(2), ["mae", "val_mae"]);
        assert_eq!(series(3), ["lr", "lr_group2", "lr_group10"]);
        assert_eq!(panels[0].series[1].color, TAB10[1]);
        assert!(!panels[3].log_scale, "one value is no decade");
    }

    #[test]
    fn count_ticks_are_round() {
        assert_eq!(count_ticks(0, 13), [0, 5, 10]);
        assert_eq!(count_ticks(0, 6), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(count_ticks(3, 3), [3]);
        assert_eq!(count_ticks(7, 1000), [200, 400, 600, 800, 1000]);
    }

    #[test]
    fn viridis_ends_are_matplotlibs() {
        assert_eq!(viridis(0.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(viridis(0.5), RGBColor(0x21, 0x91, 0x8c));
        assert_eq!(viridis(1.0), RGBColor(0xfd, 0xe7, 0x25));
    }

    #[test]
    fn value_labels_have_enough_decimals() {
        assert_eq!(value_label(0.0, 1.2)(&0.4), "0.4");
        assert_eq!(value_label(0.31, 0.36)(&0.32), "0.320");
        assert_eq!(value_label(0.0, 60.0)(&20.0), "20");
        assert_eq!(value_label(1e-4, 1e-3)(&5e-4), "5.0e-4");
        assert_eq!(value_label(2.85e-3, 3.15e-3)(&3.05e-3), "3.05e-3");
    }
}
