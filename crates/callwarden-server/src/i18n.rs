//! The languages of the review desk and of exported reports: one Fluent catalogue per language
//! (`locales/<tag>.ftl`, compiled into the binary), the choice of language from a user's
//! setting or the browser's `Accept-Language`, and dates in the reader's locale and time zone.
//! A message missing from a catalogue falls back to English; the catalogue tests make sure
//! English has every message the desk and the report ask for.

use callwarden_domain::report::Words;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue, concurrent::FluentBundle};
use std::{fmt, str::FromStr, sync::Arc};

/// The languages the desk speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Pl,
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Pl, Lang::ZhCn];

    /// The BCP 47 tag, as in `<html lang>` and the catalogue's file name.
    pub fn tag(&self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Pl => "pl",
            Self::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the language picker.
    pub fn own_name(&self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Pl => "Polski",
            Self::ZhCn => "简体中文",
        }
    }

    fn source(&self) -> &'static str {
        match self {
            Self::En => include_str!("../locales/en.ftl"),
            Self::Pl => include_str!("../locales/pl.ftl"),
            Self::ZhCn => include_str!("../locales/zh-CN.ftl"),
        }
    }

    fn chrono_locale(&self) -> chrono::Locale {
        match self {
            Self::En => chrono::Locale::en_GB,
            Self::Pl => chrono::Locale::pl_PL,
            Self::ZhCn => chrono::Locale::zh_CN,
        }
    }

    /// The best of our languages for an `Accept-Language` header, by its q-values; English
    /// when it names none of them. Chinese means Simplified Chinese unless the header names a
    /// Traditional script or region (zh-TW, zh-HK, zh-Hant), which we do not have.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut ranges: Vec<(f32, usize, &str)> = accept_language
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut fields = part.split(';');
                let tag = fields.next()?.trim();
                let q = fields
                    .find_map(|f| f.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (!tag.is_empty() && q > 0.0).then_some((q, i, tag))
            })
            .collect();
        // Highest q first; the header's order breaks ties.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .iter()
            .find_map(|(_, _, tag)| Self::for_tag(tag))
            .unwrap_or(Lang::En)
    }

    fn for_tag(tag: &str) -> Option<Lang> {
        let tag = tag.to_ascii_lowercase();
        let mut parts = tag.split(['-', '_']);
        match parts.next()? {
            "en" => Some(Self::En),
            "pl" => Some(Self::Pl),
            "zh" => {
                let traditional = parts.any(|p| matches!(p, "hant" | "tw" | "hk" | "mo"));
                (!traditional).then_some(Self::ZhCn)
            }
            _ => None,
        }
    }
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not a language the desk speaks (en, pl, zh-CN)"))
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// An IANA time zone name, parsed.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone, e.g. \"Europe/Warsaw\""))
}

/// An argument of a message: text is shown as it is, numbers choose plural forms.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Number(f64),
}

/// Every language's catalogue, loaded once.
pub struct Catalogues {
    bundles: Vec<(Lang, FluentBundle<FluentResource>)>,
}

impl Catalogues {
    /// Parses the catalogues compiled into the binary. They are part of the build, so one that
    /// does not parse is a defect the tests catch, not a runtime condition.
    pub fn load() -> Arc<Self> {
        let bundles = Lang::ALL
            .into_iter()
            .map(|lang| {
                let resource = FluentResource::try_new(lang.source().to_owned()).unwrap_or_else(
                    |(_, errors)| panic!("locales/{}.ftl does not parse: {errors:?}", lang.tag()),
                );
                let id = lang.tag().parse().expect("our tags are valid language ids");
                let mut bundle = FluentBundle::new_concurrent(vec![id]);
                // Unicode isolation marks would show up in Markdown and in copied text.
                bundle.set_use_isolating(false);
                bundle
                    .add_resource(resource)
                    .expect("a catalogue defines each message once");
                (lang, bundle)
            })
            .collect();
        Arc::new(Self { bundles })
    }

    fn bundle(&self, lang: Lang) -> &FluentBundle<FluentResource> {
        &self
            .bundles
            .iter()
            .find(|(l, _)| *l == lang)
            .expect("every language is loaded")
            .1
    }

    /// The message in `lang`, else in English. Only a message English lacks too comes out
    /// empty (logged): the catalogue tests keep that from shipping.
    pub fn message(&self, lang: Lang, id: &str, args: &[(&str, Arg)]) -> String {
        let fluent_args = (!args.is_empty()).then(|| {
            let mut a = FluentArgs::new();
            for (k, v) in args {
                match v {
                    Arg::Text(s) => a.set(*k, FluentValue::from(s.clone())),
                    Arg::Number(n) => a.set(*k, FluentValue::from(*n)),
                }
            }
            a
        });
        for lang in [lang, Lang::En] {
            let bundle = self.bundle(lang);
            if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, fluent_args.as_ref(), &mut errors);
                if !errors.is_empty() {
                    tracing::warn!(
                        lang = lang.tag(),
                        id,
                        ?errors,
                        "message formatted with errors"
                    );
                }
                return text.into_owned();
            }
        }
        tracing::error!(id, "message missing from every catalogue");
        String::new()
    }

    /// Whether `lang`'s own catalogue has the message (no fallback).
    pub fn has(&self, lang: Lang, id: &str) -> bool {
        self.bundle(lang).has_message(id)
    }

    /// The message ids of a language's catalogue.
    pub fn ids(lang: Lang) -> Vec<String> {
        let resource = FluentResource::try_new(lang.source().to_owned()).expect("catalogue parses");
        resource
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect()
    }
}

/// One reader's language and time zone: what every page and report is rendered with.
#[derive(Clone)]
pub struct Speaker {
    catalogues: Arc<Catalogues>,
    pub lang: Lang,
    pub zone: Tz,
}

impl Speaker {
    pub fn new(catalogues: Arc<Catalogues>, lang: Lang, zone: Tz) -> Self {
        Self {
            catalogues,
            lang,
            zone,
        }
    }

    /// A message without arguments.
    pub fn t(&self, id: &str) -> String {
        self.catalogues.message(self.lang, id, &[])
    }

    pub fn t_with(&self, id: &str, args: &[(&str, Arg)]) -> String {
        self.catalogues.message(self.lang, id, args)
    }

    /// A date and time in the reader's zone, as their language writes it (the pattern is the
    /// catalogue's `format-datetime`).
    pub fn datetime(&self, t: DateTime<Utc>) -> String {
        self.formatted(t, "format-datetime")
    }

    /// A day, as the reader's language writes it (`format-date`).
    pub fn date(&self, t: DateTime<Utc>) -> String {
        self.formatted(t, "format-date")
    }

    fn formatted(&self, t: DateTime<Utc>, pattern_id: &str) -> String {
        let pattern = self.t(pattern_id);
        t.with_timezone(&self.zone)
            .format_localized(&pattern, self.lang.chrono_locale())
            .to_string()
    }

    /// A length of time, rounded to what a person reads at a glance: minutes, hours and
    /// minutes, or days and hours.
    pub fn duration(&self, seconds: i64) -> String {
        let minutes = seconds.max(0) / 60;
        let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
        let n = |v: i64| Arg::Number(v as f64);
        if d > 0 {
            self.t_with("duration-days", &[("d", n(d)), ("h", n(h))])
        } else if h > 0 {
            self.t_with("duration-hours", &[("h", n(h)), ("m", n(m))])
        } else {
            self.t_with("duration-minutes", &[("m", n(m))])
        }
    }

    /// The name of a code (`category`, `severity`, `status`, ...): `<group>-<code>` in the
    /// catalogue. A code no catalogue names (one newer than the catalogues) shows as itself.
    pub fn name(&self, group: &str, code: &str) -> String {
        let id = format!("{group}-{code}");
        if self.catalogues.has(Lang::En, &id) {
            self.t(&id)
        } else {
            code.to_owned()
        }
    }
}

impl Words for Speaker {
    fn say(&self, id: &str, args: &[(&str, String)]) -> String {
        let args: Vec<(&str, Arg)> = args
            .iter()
            .map(|(k, v)| (*k, Arg::Text(v.clone())))
            .collect();
        self.t_with(id, &args)
    }

    fn name(&self, group: &str, code: &str) -> String {
        Speaker::name(self, group, code)
    }

    fn time(&self, t: DateTime<Utc>) -> String {
        self.datetime(t)
    }
}
