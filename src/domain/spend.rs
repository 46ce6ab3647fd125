//! Ad spend the shop reports per day, campaign and platform, for return on ad spend.

use serde::{Deserialize, Serialize};

/// One day's spend of one campaign on one platform. The three together are its identity: the
/// same row reported again replaces the first (a corrected figure), so it counts once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spend {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub campaign: String,
    pub platform: String,
    pub amount: f64,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
}

/// ISO 4217 codes of currencies in use.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN \
     BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD \
     GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR \
     LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP \
     PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY \
     TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG";

/// Whether `code` is an ISO 4217 currency in use.
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && CURRENCIES.split_ascii_whitespace().any(|c| c == code)
}

impl Spend {
    /// Trims and checks a reported row; the error says which field is wrong and why.
    pub fn checked(self) -> Result<Spend, String> {
        let date = self.date.trim().to_string();
        if !is_date(&date) {
            return Err(format!("`date` {date:?} is not a day written YYYY-MM-DD"));
        }
        let campaign = self.campaign.trim().to_string();
        let platform = self.platform.trim().to_lowercase();
        for (name, value) in [("campaign", &campaign), ("platform", &platform)] {
            if value.is_empty() || value.len() > 200 || value.contains('\0') {
                return Err(format!("`{name}` must be 1 to 200 characters"));
            }
        }
        if !self.amount.is_finite() || self.amount < 0.0 {
            return Err(format!("`amount` {} must be a number of zero or more", self.amount));
        }
        let currency = self.currency.trim().to_string();
        if !is_currency(&currency) {
            return Err(format!("`currency` {currency:?} is not an ISO 4217 currency such as EUR"));
        }
        Ok(Spend { date, campaign, platform, amount: self.amount, currency })
    }
}

/// A real calendar day, `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts[..] else { return false };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else { return false };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(date: &str, amount: f64, currency: &str) -> Spend {
        Spend {
            date: date.into(),
            campaign: " spring ".into(),
            platform: "Meta".into(),
            amount,
            currency: currency.into(),
        }
    }

    #[test]
    fn rows_are_checked_field_by_field() {
        let ok = row("2024-02-29", 12.5, "EUR").checked().expect("a leap day");
        assert_eq!((ok.campaign.as_str(), ok.platform.as_str()), ("spring", "meta"));
        for (bad, field) in [
            (row("2023-02-29", 1.0, "EUR"), "date"),
            (row("2024-13-01", 1.0, "EUR"), "date"),
            (row("24-01-01", 1.0, "EUR"), "date"),
            (row("2024-01-01", -1.0, "EUR"), "amount"),
            (row("2024-01-01", f64::NAN, "EUR"), "amount"),
            (row("2024-01-01", 1.0, "EURO"), "currency"),
            (row("2024-01-01", 1.0, "XYZ"), "currency"),
        ] {
            let error = bad.checked().expect_err("refused");
            assert!(error.contains(&format!("`{field}`")), "{error}");
        }
        assert!(is_currency("USD") && is_currency("CHF") && !is_currency("usd"));
    }
}
