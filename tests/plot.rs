//! Pictures of a run (`wgrad::train::plot`, the `plot` feature): the history chart names
//! every series and panel and leaves gaps for NaN epochs, the confusion matrix puts true
//! classes down the side and predicted ones across, the PNG is a real image of the SVG's
//! size with text drawn from the embedded font, and a failed write is an error that
//! leaves the picture already there whole.

#![cfg(feature = "plot")]

mod common;

use std::path::Path;

use common::TempDir;
use wgrad::metrics::ConfusionMatrix;
use wgrad::train::plot::{plot_confusion_matrix, plot_history};
use wgrad::train::{History, Logs};
use wgrad::Error;

/// matplotlib's first two colours: training and validation series, as the SVG writes them.
const TRAINING: &str = "#1F77B4";
const VALIDATION: &str = "#FF7F0E";

/// A history of `columns`, each `(name, values)`, one value per epoch.
fn history(columns: &[(&str, &[f64])]) -> History {
    let epochs = columns[0].1.len();
    let mut history = History::default();
    for epoch in 0..epochs {
        let logs: Logs = columns.iter().map(|(name, values)| (name.to_string(), values[epoch])).collect();
        history.push(&logs);
    }
    history
}

/// Four epochs of a classifier: loss, accuracy, their validation twins and the rate.
fn classifier_history() -> History {
    history(&[
        ("loss", &[1.2, 0.7, 0.5, 0.4]),
        ("val_loss", &[1.1, 0.8, 0.6, 0.55]),
        ("accuracy", &[0.5, 0.7, 0.8, 0.85]),
        ("val_accuracy", &[0.45, 0.65, 0.75, 0.8]),
        ("lr", &[1e-3, 1e-3, 5e-4, 5e-4]),
    ])
}

/// One element of an SVG: its tag, its attributes and, for `<text>`, its trimmed text.
struct Element {
    tag: String,
    attributes: Vec<(String, String)>,
    text: String,
}

impl Element {
    fn attribute(&self, name: &str) -> &str {
        self.attributes.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn number(&self, name: &str) -> f64 {
        self.attribute(name).parse().unwrap_or_else(|_| panic!("<{}> {name}={:?}", self.tag, self.attribute(name)))
    }
}

/// The elements of `svg` in document order (enough of XML for what plotters writes:
/// attributes in double quotes, text only inside `<text>`).
fn elements(svg: &str) -> Vec<Element> {
    let mut out = Vec::new();
    for piece in svg.split('<').skip(1) {
        if piece.starts_with('/') {
            continue;
        }
        let (inside, after) = piece.split_once('>').expect("a closed tag");
        let inside = inside.trim_end_matches('/');
        let (tag, mut rest) = inside.split_once(' ').unwrap_or((inside, ""));
        let mut attributes = Vec::new();
        while let Some((name, value)) = rest.split_once("=\"") {
            let (value, tail) = value.split_once('"').expect("a closed attribute");
            attributes.push((name.trim().to_string(), value.to_string()));
            rest = tail;
        }
        out.push(Element { tag: tag.to_string(), attributes, text: after.trim().to_string() });
    }
    out
}

/// The texts of `svg`, in document order.
fn texts(svg: &str) -> Vec<Element> {
    elements(svg).into_iter().filter(|e| e.tag == "text").collect()
}

fn text_named<'a>(texts: &'a [Element], text: &str) -> &'a Element {
    texts.iter().find(|e| e.text == text).unwrap_or_else(|| panic!("no text {text:?}"))
}

/// The width and height of the SVG's root element.
fn svg_size(svg: &str) -> (u32, u32) {
    let root = elements(svg).into_iter().find(|e| e.tag == "svg").expect("an <svg> element");
    (root.number("width") as u32, root.number("height") as u32)
}

/// Decodes an 8-bit RGB PNG after checking its signature and header by hand: width,
/// height and the pixels, 3 bytes each.
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: not a PNG signature", path.display());
    assert_eq!(&bytes[12..16], b"IHDR", "{}: the first chunk is not IHDR", path.display());
    let header_width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let header_height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (header_width, header_height));
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    pixels.truncate(frame.buffer_size());
    (frame.width, frame.height, pixels)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn history_chart_names_every_panel_and_series() {
    let dir = TempDir::new("history-names");
    let written = plot_history(&classifier_history(), dir.path("run")).unwrap();
    assert_eq!(written, [dir.path("run.svg"), dir.path("run.png")]);
    assert_eq!(dir.entries(), ["run.png", "run.svg"]);

    let svg = read(&dir.path("run.svg"));
    let texts = texts(&svg);
    let position = |text: &str| texts.iter().position(|e| e.text == text).unwrap_or_else(|| panic!("no text {text:?}"));
    // Panel titles in order (loss first, the rate last), each followed by its legend.
    let (loss, accuracy, rate) = (position("loss"), position("accuracy"), position("learning rate"));
    assert!(loss < accuracy && accuracy < rate, "panels out of order: {loss}, {accuracy}, {rate}");
    for series in ["loss", "val_loss", "accuracy", "val_accuracy", "lr"] {
        assert!(texts.iter().any(|e| e.text == series), "no legend entry {series}");
    }
    // "loss" is a panel title and a legend entry; "accuracy" too.
    assert_eq!(texts.iter().filter(|e| e.text == "loss").count(), 2);
    assert_eq!(texts.iter().filter(|e| e.text == "accuracy").count(), 2);
    assert_eq!(texts.iter().filter(|e| e.text == "epoch").count(), 3, "an x axis per panel");
    // Epochs count from 1: the loss panel's ticks are 1 to 4, and there is no epoch 0.
    let epoch_ticks: Vec<&str> = texts[loss..accuracy]
        .iter()
        .map(|e| e.text.as_str())
        .filter(|t| ["0", "1", "2", "3", "4", "5"].contains(t))
        .collect();
    assert_eq!(epoch_ticks, ["1", "2", "3", "4"]);

    // Training in the first colour, validation in the second: four markers each per
    // panel that has both, and each panel's line through all four epochs.
    let elements = elements(&svg);
    let markers = |color: &str| elements.iter().filter(|e| e.tag == "circle" && e.attribute("fill") == color).count();
    assert_eq!(markers(TRAINING), 4 + 4 + 4, "loss, accuracy and lr");
    assert_eq!(markers(VALIDATION), 4 + 4, "val_loss and val_accuracy");
}

#[test]
fn history_png_is_an_image_of_the_svg_size_with_its_series_and_text() {
    let dir = TempDir::new("history-png");
    let [svg_path, png_path] =
        <[_; 2]>::try_from(plot_history(&classifier_history(), dir.path("run")).unwrap()).unwrap();
    let (width, height, pixels) = decode_png(&png_path);
    assert_eq!((width, height), svg_size(&read(&svg_path)));
    assert_eq!((width, height), (3 * 480, 360), "three panels in a row");

    let count = |rgb: [u8; 3]| pixels.chunks_exact(3).filter(|p| *p == rgb).count();
    assert!(count([0x1f, 0x77, 0xb4]) > 100, "the training series are drawn");
    assert!(count([0xff, 0x7f, 0x0e]) > 100, "the validation series are drawn");
    // Each panel's title is centred in its top 40 rows: dark, anti-aliased glyph pixels.
    for panel in 0..3 {
        let (x0, x1) = (panel * 480 + 180, panel * 480 + 300);
        let dark = (0..40)
            .flat_map(|y| (x0..x1).map(move |x| (y * width as usize + x) * 3))
            .filter(|&i| pixels[i] < 100 && pixels[i + 1] < 100 && pixels[i + 2] < 100)
            .count();
        assert!(dark > 20, "panel {panel}: no title drawn ({dark} dark pixels)");
    }
}

#[test]
fn png_text_comes_from_the_embedded_font() {
    // Two histories with the same values and different names: their PNGs differ only
    // where the names are drawn, so text rendering must have happened.
    let dir = TempDir::new("history-text");
    let values: &[f64] = &[0.5, 0.6, 0.7];
    let a = plot_history(&history(&[("accuracy", values)]), dir.path("a")).unwrap();
    let b = plot_history(&history(&[("precision", values)]), dir.path("b")).unwrap();
    let (width, _, a) = decode_png(&a[1]);
    let (_, _, b) = decode_png(&b[1]);
    let differing_rows: Vec<usize> =
        (0..a.len() / 3).filter(|&i| a[i * 3..i * 3 + 3] != b[i * 3..i * 3 + 3]).map(|i| i / width as usize).collect();
    assert!(differing_rows.len() > 50, "the names were not drawn: {} pixels differ", differing_rows.len());
    // The title is at the top, the legend low in the panel (the values rise): nothing
    // between them moved.
    assert!(differing_rows.iter().all(|row| !(120..=250).contains(row)), "rows {differing_rows:?}");
}

#[test]
fn nan_epochs_are_gaps_not_zeros() {
    let dir = TempDir::new("history-nan");
    let h = history(&[
        ("loss", &[1.0, 0.8, 0.6, 0.5]),
        ("val_loss", &[0.9, 0.7, f64::NAN, 0.55]),
        ("val_accuracy", &[f64::NAN; 4]),
    ]);
    let written = plot_history(&h, dir.path("run")).unwrap();
    let svg = read(&written[0]);
    let elements = elements(&svg);
    let markers = |color: &str| elements.iter().filter(|e| e.tag == "circle" && e.attribute("fill") == color).count();
    assert_eq!(markers(TRAINING), 4);
    assert_eq!(markers(VALIDATION), 3, "the NaN epoch has no marker");

    // Lines: the training loss is one line of four points; the validation loss is a
    // line of two (epochs 1 and 2) and a lone marker, never a line through epoch 3.
    let lines = |color: &str| -> Vec<usize> {
        let mut points: Vec<usize> = elements
            .iter()
            .filter(|e| e.tag == "polyline" && e.attribute("stroke") == color)
            .map(|e| e.attribute("points").split_whitespace().count())
            .collect();
        points.sort();
        points
    };
    // The legend's sample of each series is a two-point line too.
    assert_eq!(lines(TRAINING), [2, 4]);
    assert_eq!(lines(VALIDATION), [2, 2]);

    // No marker sits lower than the lowest value: a NaN drawn as 0 would.
    let training_lowest =
        elements.iter().filter(|e| e.tag == "circle").map(|e| e.number("cy")).fold(f64::NEG_INFINITY, f64::max);
    let lowest_value = elements
        .iter()
        .filter(|e| e.tag == "circle" && e.attribute("fill") == TRAINING)
        .map(|e| e.number("cy"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(training_lowest, lowest_value, "a marker below the training loss's 0.5");

    // A series that never logged a value is left out, and so is its panel.
    let texts = texts(&svg);
    assert!(texts.iter().all(|e| e.text != "val_accuracy" && e.text != "accuracy"));
    assert_eq!(svg_size(&svg), (480, 360), "one panel: loss");
}

#[test]
fn learning_rates_spanning_a_decade_are_on_a_log_scale() {
    let dir = TempDir::new("history-log");
    let h = history(&[("loss", &[1.0, 0.5, 0.3, 0.2]), ("lr", &[1e-2, 1e-3, 1e-4, 1e-5])]);
    let svg = read(&plot_history(&h, dir.path("run")).unwrap()[0]);
    let texts = texts(&svg);
    for tick in ["1e-2", "1e-3", "1e-4", "1e-5"] {
        text_named(&texts, tick);
    }
    // On a log scale the four decades are evenly spaced.
    let ys: Vec<f64> = elements(&svg)
        .into_iter()
        .filter(|e| e.tag == "circle" && e.number("cx") > 480.0)
        .map(|e| e.number("cy"))
        .collect();
    assert_eq!(ys.len(), 4);
    let gaps: Vec<f64> = ys.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (g - gaps[0]).abs() <= 1.0), "uneven decades: {gaps:?}");
}

#[test]
fn an_empty_history_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("history-empty");
    let err = plot_history(&History::default(), dir.path("run")).unwrap_err();
    assert!(
        matches!(&err, Error::Plot { path, reason } if path.ends_with("run") && reason.contains("no epochs")),
        "{err}"
    );
    // Epochs that logged nothing finite are as empty.
    let err = plot_history(&history(&[("loss", &[f64::NAN, f64::INFINITY])]), dir.path("run")).unwrap_err();
    assert!(matches!(&err, Error::Plot { reason, .. } if reason.contains("no finite value")), "{err}");
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn an_unwritable_path_is_an_error_and_leaves_the_old_picture() {
    let dir = TempDir::new("history-unwritable");
    // `run.svg` is a folder, which no file can replace (root included); the PNG of an
    // earlier run is there too.
    std::fs::create_dir(dir.path("run.svg")).unwrap();
    dir.write("run.svg/keep", b"inside");
    dir.write("run.png", b"the earlier picture");
    let err = plot_history(&classifier_history(), dir.path("run")).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if Path::new(path) == dir.path("run.svg")), "{err}");
    assert_eq!(std::fs::read(dir.path("run.png")).unwrap(), b"the earlier picture");
    assert_eq!(std::fs::read(dir.path("run.svg/keep")).unwrap(), b"inside");
    assert_eq!(dir.entries(), ["run.png", "run.svg"], "a temporary file was left behind");

    // A folder that does not exist.
    let missing = dir.path("missing").join("run");
    let err = plot_history(&classifier_history(), &missing).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if Path::new(path) == missing.with_extension("svg")), "{err}");
    let err = plot_confusion_matrix(&ConfusionMatrix::new(2), &missing, None).unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err}");
}

#[test]
fn a_stem_ending_in_svg_or_png_loses_that_extension() {
    let dir = TempDir::new("history-stem");
    let written = plot_history(&classifier_history(), dir.path("run.png")).unwrap();
    assert_eq!(written, [dir.path("run.svg"), dir.path("run.png")]);
    let written = plot_history(&classifier_history(), dir.path("run.v2")).unwrap();
    assert_eq!(written, [dir.path("run.v2.svg"), dir.path("run.v2.png")]);
}

/// True 0 1 2 against predicted: 7 (0,0), 13 true 1 predicted as 0, 2 (1,1), 5 (2,2), 1 (2,1).
fn confusion_matrix(cm: &mut ConfusionMatrix) {
    let mut labels = Vec::new();
    let mut predictions = Vec::new();
    for (t, p, n) in [(0, 0, 7), (1, 0, 13), (1, 1, 2), (2, 2, 5), (2, 1, 1)] {
        labels.extend(std::iter::repeat_n(t, n));
        predictions.extend(std::iter::repeat_n(p, n));
    }
    cm.update(&predictions, &labels);
}

#[test]
fn confusion_matrix_has_true_classes_down_and_predicted_across() {
    let dir = TempDir::new("confusion");
    let mut cm = ConfusionMatrix::new(3);
    confusion_matrix(&mut cm);
    let written = plot_confusion_matrix(&cm, dir.path("cm"), Some(&["cat", "dog", "bird"])).unwrap();
    assert_eq!(written, [dir.path("cm.svg"), dir.path("cm.png")]);
    let svg = read(&written[0]);
    let texts = texts(&svg);
    text_named(&texts, "True label");
    text_named(&texts, "Predicted label");
    // Each name twice: a row label (right-aligned, left of the matrix) and a column
    // label (centred, below it).
    for name in ["cat", "dog", "bird"] {
        let anchors: Vec<&str> = texts.iter().filter(|e| e.text == name).map(|e| e.attribute("text-anchor")).collect();
        assert_eq!(anchors, ["end", "middle"], "{name}");
    }
    let row = |name: &str| texts.iter().find(|e| e.text == name && e.attribute("text-anchor") == "end").unwrap();
    let column = |name: &str| texts.iter().find(|e| e.text == name && e.attribute("text-anchor") == "middle").unwrap();
    assert!(row("cat").number("y") < row("dog").number("y") && row("dog").number("y") < row("bird").number("y"));
    assert!(column("cat").number("x") < column("dog").number("x"));

    // Every count is written in its cell: 13 true dogs predicted as cats sit in the dog
    // row and the cat column.
    let counts: Vec<&Element> =
        texts.iter().filter(|e| e.attribute("text-anchor") == "middle" && e.attribute("dy") == "0.5ex").collect();
    assert_eq!(counts.len(), 9);
    let thirteen = text_named(&texts, "13");
    assert_eq!(thirteen.number("y"), row("dog").number("y"));
    assert_eq!(thirteen.number("x"), column("cat").number("x"));
    let one = text_named(&texts, "1");
    assert_eq!((one.number("x"), one.number("y")), (column("dog").number("x"), row("bird").number("y")));
    assert_eq!(counts.iter().filter(|e| e.text == "0").count(), 4);

    // The colour scale, viridis from the smallest count to the largest: the 13 cell in
    // its brightest colour, the four empty cells in its darkest, and each count written
    // in the other end's colour, as scikit-learn does; the colour bar's ticks are round.
    let elements = elements(&svg);
    let filled = |color: &str| elements.iter().filter(|e| e.tag == "rect" && e.attribute("fill") == color).count();
    assert_eq!(filled("#FDE725"), 1, "the 13 cell");
    assert_eq!(filled("#440154"), 4, "the empty cells");
    assert_eq!(thirteen.attribute("fill"), "#440154");
    assert!(counts.iter().filter(|e| e.text == "0").all(|e| e.attribute("fill") == "#FDE725"));
    let ticks: Vec<&str> =
        texts.iter().filter(|e| e.attribute("text-anchor") == "start").map(|e| e.text.as_str()).collect();
    assert_eq!(ticks, ["0", "5", "10"]);

    let (width, height, _) = decode_png(&written[1]);
    assert_eq!((width, height), svg_size(&svg));
}

#[test]
fn confusion_matrix_labels_default_to_its_names_then_its_indices() {
    let dir = TempDir::new("confusion-labels");
    let mut named = ConfusionMatrix::with_class_names(&["ant", "bee", "a rather long name for a class of things"]);
    confusion_matrix(&mut named);
    let svg = read(&plot_confusion_matrix(&named, dir.path("named"), None).unwrap()[0]);
    let named_texts = texts(&svg);
    for name in ["ant", "bee"] {
        assert_eq!(named_texts.iter().filter(|e| e.text == name).count(), 2, "{name}");
    }
    // The long name in full down the side, shortened under its column.
    assert_eq!(named_texts.iter().filter(|e| e.text == "a rather long name for a class of things").count(), 1);
    assert!(named_texts.iter().any(|e| e.text.starts_with("a rather") && e.text.ends_with('…')));

    let mut plain = ConfusionMatrix::new(3);
    confusion_matrix(&mut plain);
    let svg = read(&plot_confusion_matrix(&plain, dir.path("plain"), None).unwrap()[0]);
    let texts = texts(&svg);
    let labels: Vec<&str> =
        texts.iter().filter(|e| e.attribute("text-anchor") == "end").map(|e| e.text.as_str()).collect();
    assert_eq!(labels, ["0", "1", "2"]);
}

#[test]
#[should_panic(expected = "plot_confusion_matrix: 2 class names for a matrix of 3 classes")]
fn confusion_matrix_with_the_wrong_number_of_names_panics() {
    let dir = TempDir::new("confusion-wrong-names");
    let _ = plot_confusion_matrix(&ConfusionMatrix::new(3), dir.path("cm"), Some(&["a", "b"]));
}
