//! The device tables of each board kind (parts, descriptions and sensor
//! channels after the real boards' configurations, with typical values).

use gateway_messages::sp_impl::details::MeasurementKind;

/// Sensor channels: (name, kind, typical value, swing).
pub(super) type Channels = Vec<(String, MeasurementKind, f32, f32)>;

/// A device to add: (component id, part, description, A0 only, channels).
pub(super) type Spec = (String, String, String, bool, Channels);

fn owned(specs: Vec<(&str, &str, &str, bool, Channels)>) -> Vec<Spec> {
    specs
        .into_iter()
        .map(|(id, part, desc, a0, ch)| (id.into(), part.into(), desc.into(), a0, ch))
        .collect()
}

fn rail(names: &[&str], kinds: &[(MeasurementKind, f32, f32)]) -> Channels {
    let mut out = Vec::new();
    for &(kind, base, swing) in kinds {
        for n in names {
            out.push((n.to_string(), kind, base, swing));
        }
    }
    out
}

use MeasurementKind::{
    Current, InputCurrent, InputVoltage, Power, Speed as Rpm, Temperature, Voltage,
};

pub(super) fn sled_devices() -> Vec<Spec> {
    let t = (Temperature, 45.0, 5.0);
    let mut d = owned(vec![
        (
            "U350",
            "raa229618",
            "CPU power controller",
            true,
            rail(
                &["VDD_VCORE", "VDD_MEM_ABCD"],
                &[
                    t,
                    (Power, 120.0, 30.0),
                    (Voltage, 1.0, 0.02),
                    (Current, 90.0, 20.0),
                ],
            ),
        ),
        (
            "U351",
            "raa229618",
            "SoC power controller",
            true,
            rail(
                &["VDDCR_SOC", "VDD_MEM_EFGH"],
                &[
                    t,
                    (Power, 40.0, 10.0),
                    (Voltage, 0.9, 0.02),
                    (Current, 40.0, 8.0),
                ],
            ),
        ),
        (
            "U352",
            "isl68224",
            "DIMM/SP3 1.8V A0 power controller",
            true,
            rail(
                &["VPP_ABCD", "VPP_EFGH", "V1P8_SP3"],
                &[(Voltage, 1.8, 0.02), (Current, 2.0, 0.5)],
            ),
        ),
        (
            "U522",
            "tps546b24a",
            "A2 3.3V rail",
            false,
            rail(
                &["V3P3_SP_A2"],
                &[t, (Voltage, 3.3, 0.03), (Current, 1.5, 0.3)],
            ),
        ),
        (
            "U419",
            "adm1272",
            "Fan hot swap controller",
            false,
            rail(
                &["V54_FAN"],
                &[t, (Voltage, 54.0, 0.5), (Current, 1.2, 0.4)],
            ),
        ),
        (
            "U452",
            "adm1272",
            "Sled hot swap controller",
            false,
            rail(
                &["V54_HS_OUTPUT"],
                &[t, (Voltage, 54.0, 0.5), (Current, 8.0, 2.0)],
            ),
        ),
        (
            "U321",
            "max31790",
            "Fan controller",
            false,
            rail(
                &[
                    "Southeast",
                    "Northeast",
                    "South",
                    "North",
                    "Southwest",
                    "Northwest",
                ],
                &[(Rpm, 6500.0, 800.0)],
            ),
        ),
        (
            "U431",
            "bmr491",
            "Intermediate bus converter",
            false,
            rail(
                &["V12_SYS_A2"],
                &[
                    t,
                    (Power, 450.0, 80.0),
                    (Voltage, 12.0, 0.1),
                    (Current, 37.0, 6.0),
                ],
            ),
        ),
        (
            "J197",
            "tmp117",
            "Northeast temperature sensor",
            false,
            rail(&["Northeast"], &[(Temperature, 28.0, 3.0)]),
        ),
        (
            "J198",
            "tmp117",
            "North temperature sensor",
            false,
            rail(&["North"], &[(Temperature, 29.0, 3.0)]),
        ),
        (
            "J199",
            "tmp117",
            "Northwest temperature sensor",
            false,
            rail(&["Northwest"], &[(Temperature, 28.5, 3.0)]),
        ),
        (
            "CPU",
            "sbtsi",
            "CPU temperature sensor",
            true,
            rail(&["CPU"], &[(Temperature, 62.0, 8.0)]),
        ),
    ]);
    for (i, slot) in [
        "A0", "A1", "B0", "B1", "C0", "C1", "D0", "D1", "E0", "E1", "F0", "F1", "G0", "G1", "H0",
        "H1",
    ]
    .iter()
    .enumerate()
    {
        let refdes = format!("M{}", (i % 2) * 8 + i / 2);
        let channels = rail(&[&format!("DIMM_{slot}")], &[(Temperature, 40.0, 4.0)]);
        d.push((
            refdes,
            "tse2004av".into(),
            format!("DIMM {slot}"),
            true,
            channels,
        ));
    }
    d
}

pub(super) fn switch_devices() -> Vec<Spec> {
    let t = (Temperature, 50.0, 5.0);
    let mut d = owned(vec![
        (
            "U64",
            "tmp451",
            "TF2 temperature sensor",
            true,
            rail(&["tf2"], &[(Temperature, 65.0, 6.0)]),
        ),
        (
            "U32",
            "raa229618",
            "TF2 VDDA rail",
            true,
            rail(
                &["V0P9_TF2_VDDT", "V1P5_TF2_VDDA"],
                &[t, (Voltage, 1.2, 0.3), (Current, 20.0, 4.0)],
            ),
        ),
        (
            "U12",
            "bmr491",
            "Intermediate bus converter",
            false,
            rail(
                &["V12P0_SYS"],
                &[
                    t,
                    (Power, 380.0, 60.0),
                    (Voltage, 12.0, 0.1),
                    (Current, 31.0, 5.0),
                ],
            ),
        ),
        (
            "U8",
            "adm1272",
            "Fan 2 hot swap controller",
            false,
            rail(
                &["V54_FAN2"],
                &[t, (Voltage, 54.0, 0.5), (Current, 1.0, 0.3)],
            ),
        ),
        (
            "U10",
            "adm1272",
            "Fan 3 hot swap controller",
            false,
            rail(
                &["V54_FAN3"],
                &[t, (Voltage, 54.0, 0.5), (Current, 1.0, 0.3)],
            ),
        ),
        (
            "U78",
            "max31790",
            "Fan 2/3 controller",
            false,
            rail(
                &["SW_fan2", "NW_fan2", "WSW_fan3", "WNW_fan3"],
                &[(Rpm, 5200.0, 600.0)],
            ),
        ),
        (
            "U65",
            "tmp451",
            "VSC7448 temperature sensor",
            false,
            rail(&["vsc7448"], &[(Temperature, 55.0, 4.0)]),
        ),
        (
            "J67",
            "tmp117",
            "Northwest temperature sensor",
            false,
            rail(&["Northwest"], &[(Temperature, 27.0, 3.0)]),
        ),
        (
            "J71",
            "tmp117",
            "South temperature sensor",
            false,
            rail(&["South"], &[(Temperature, 30.0, 3.0)]),
        ),
        (
            "J73",
            "tmp117",
            "Southeast temperature sensor",
            false,
            rail(&["Southeast"], &[(Temperature, 31.0, 3.0)]),
        ),
    ]);
    for i in 0..32 {
        let id = format!("xcvr{i}");
        let channels = rail(&[&id], &[(Temperature, 42.0, 4.0)]);
        d.push((
            id,
            "qsfp".into(),
            format!("QSFP transceiver {i}"),
            true,
            channels,
        ));
    }
    d
}

pub(super) fn power_shelf_devices() -> Vec<Spec> {
    let mut d: Vec<Spec> = Vec::new();
    for n in 0..6 {
        let (v54, v12) = (format!("V54_PSU{n}"), format!("V12_PSU{n}"));
        let mut sensors = rail(
            &[&v54, &v12],
            &[
                (InputVoltage, 230.0, 3.0),
                (InputCurrent, 6.0, 1.5),
                (Voltage, 54.0, 0.3),
                (Current, 25.0, 6.0),
            ],
        );
        sensors.extend(rail(
            &[
                &format!("psu{n}mcu temp 1"),
                &format!("psu{n}mcu temp 2"),
                &format!("psu{n}mcu temp 3"),
            ],
            &[(Temperature, 38.0, 4.0)],
        ));
        sensors.extend(rail(
            &[&format!("psu{n}mcu fan 1"), &format!("psu{n}mcu fan 2")],
            &[(Rpm, 9000.0, 1500.0)],
        ));
        d.push((
            format!("psu{n}eeprom"),
            "m24c02".into(),
            format!("PSU {n} EEPROM"),
            false,
            Vec::new(),
        ));
        d.push((
            format!("psu{n}mcu"),
            "mwocp68".into(),
            format!("PSU {n} MCU"),
            false,
            sensors,
        ));
    }
    d
}
