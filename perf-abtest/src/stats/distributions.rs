//! The distribution functions the tests need: Student's t (central and noncentral) and
//! chi-square, on top of `statrs`.

use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};
use statrs::function::{beta::beta_reg, gamma::ln_gamma};

use super::StatsError;

/// Student's t distribution with `df` degrees of freedom.
fn students_t(df: f64) -> Result<StudentsT, StatsError> {
    if !(df.is_finite() && df > 0.0) {
        return Err(StatsError::DegreesOfFreedom(df));
    }
    StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::DegreesOfFreedom(df))
}

/// `P(T > t)` for Student's t with `df` degrees of freedom.
pub(super) fn t_sf(t: f64, df: f64) -> Result<f64, StatsError> {
    Ok(students_t(df)?.sf(t))
}

/// `P(T <= t)` for Student's t with `df` degrees of freedom.
fn t_cdf(t: f64, df: f64) -> Result<f64, StatsError> {
    Ok(students_t(df)?.cdf(t))
}

/// The `p` quantile of Student's t with `df` degrees of freedom, for `p` in `(0, 1)`: statrs'
/// inverse refined by Newton steps on the CDF, so that it is as accurate as the CDF.
pub(super) fn t_quantile(p: f64, df: f64) -> Result<f64, StatsError> {
    let dist = students_t(df)?;
    let mut x = dist.inverse_cdf(p);
    for _ in 0..4 {
        let density = dist.pdf(x);
        if !(density.is_finite() && density > 0.0) {
            break;
        }
        let step = (dist.cdf(x) - p) / density;
        x -= step;
        if step.abs() <= 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    Ok(x)
}

/// `P(X > x)` for the chi-square distribution with `df` degrees of freedom.
pub(super) fn chi_square_sf(x: f64, df: f64) -> Result<f64, StatsError> {
    let dist = ChiSquared::new(df).map_err(|_| StatsError::DegreesOfFreedom(df))?;
    Ok(dist.sf(x))
}

/// The standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    // The standard normal always exists.
    Normal::standard().cdf(x)
}

/// The standard normal CDF with mean `mean` and standard deviation `sd`.
fn normal_cdf_with(x: f64, mean: f64, sd: f64) -> f64 {
    normal_cdf((x - mean) / sd)
}

/// `P(T <= t)` for the noncentral t distribution with `df` degrees of freedom and
/// noncentrality `ncp`: Lenth's algorithm AS 243 as R's `pnt` implements it (twin series of
/// Guenther, with the Abramowitz & Stegun 26.7.10 normal approximation for very large `df`
/// or `ncp`).
pub(super) fn noncentral_t_cdf(t: f64, df: f64, ncp: f64) -> Result<f64, StatsError> {
    const ITERATIONS: u32 = 1000;
    const ERROR_MAX: f64 = 1e-12;
    if !(df.is_finite() && df > 0.0) {
        return Err(StatsError::DegreesOfFreedom(df));
    }
    if ncp == 0.0 {
        return t_cdf(t, df);
    }
    if t.is_infinite() {
        return Ok(if t < 0.0 { 0.0 } else { 1.0 });
    }
    let (negative, tt, del) = if t >= 0.0 {
        (false, t, ncp)
    } else {
        if ncp > 40.0 {
            return Ok(0.0);
        }
        (true, -t, -ncp)
    };
    // R switches to the normal approximation where exp(-del^2 / 2) would underflow.
    if df > 4e5 || del * del > 2.0 * std::f64::consts::LN_2 * 1021.0 {
        let s = 1.0 / (4.0 * df);
        let lower = normal_cdf_with(tt * (1.0 - s), del, (1.0 + tt * tt * 2.0 * s).sqrt());
        return Ok(if negative { 1.0 - lower } else { lower });
    }
    let x = t * t / (t * t + df);
    let mut tnc = 0.0;
    if x > 0.0 {
        let lambda = del * del;
        let mut p = 0.5 * (-0.5 * lambda).exp();
        if p == 0.0 {
            return Ok(if negative { 1.0 } else { 0.0 });
        }
        let mut q = (2.0 / std::f64::consts::PI).sqrt() * p * del;
        let mut s = 0.5 - p;
        if s < 1e-7 {
            s = -0.5 * (-0.5 * lambda).exp_m1();
        }
        let mut a = 0.5;
        let b = 0.5 * df;
        let rxb = (df / (t * t + df)).powf(b);
        let albeta = 0.5 * std::f64::consts::PI.ln() + ln_gamma(b) - ln_gamma(0.5 + b);
        let mut xodd = beta_reg(a, b, x);
        let mut godd = 2.0 * rxb * (a * x.ln() - albeta).exp();
        let bx = b * x;
        let mut xeven = if bx < f64::EPSILON { bx } else { 1.0 - rxb };
        let mut geven = bx * rxb;
        tnc = p * xodd + q * xeven;
        for it in 1..=ITERATIONS {
            let it = f64::from(it);
            a += 1.0;
            xodd -= godd;
            xeven -= geven;
            godd *= x * (a + b - 1.0) / a;
            geven *= x * (a + b - 0.5) / (a + 0.5);
            p *= lambda / (2.0 * it);
            q *= lambda / (2.0 * it + 1.0);
            tnc += p * xodd + q * xeven;
            s -= p;
            if s < -1e-10 || (s <= 0.0 && it > 1.0) {
                break;
            }
            let error_bound = 2.0 * s * (xodd - godd);
            if error_bound.abs() < ERROR_MAX {
                break;
            }
        }
    }
    tnc += normal_cdf(-del);
    let lower = tnc.min(1.0);
    Ok(if negative { 1.0 - lower } else { lower })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got}, want {want} (relative tolerance {rel})"
        );
    }

    #[test]
    fn noncentral_t_matches_scipy() {
        // scipy 1.17.1: scipy.stats.nct.cdf(t, df, nc).
        let cases = [
            (2.0, 10.0, 1.5, 0.6591540724421909),
            (-1.0, 30.0, 0.5, 0.06949240420416142),
            (1.96, 100.0, 3.0, 0.15032902591914712),
            (0.5, 5.0, -1.0, 0.9276977565230959),
            (2.5, 2000.0, 2.8, 0.3820587105530178),
        ];
        for (t, df, nc, want) in cases {
            close(noncentral_t_cdf(t, df, nc).expect("valid df"), want, 1e-9);
        }
    }

    #[test]
    fn t_quantile_inverts_the_cdf() {
        // scipy 1.17.1: scipy.stats.t.ppf(0.975, df) for df = 1, 10, 217.65788765911674.
        close(
            t_quantile(0.975, 1.0).expect("valid df"),
            12.706204736174694,
            1e-12,
        );
        close(
            t_quantile(0.975, 10.0).expect("valid df"),
            2.228138851986274,
            1e-12,
        );
        close(
            t_quantile(0.975, 217.65788765911674).expect("valid df"),
            1.9709228932729592,
            1e-12,
        );
        assert!(t_quantile(0.5, 0.0).is_err());
    }
}
