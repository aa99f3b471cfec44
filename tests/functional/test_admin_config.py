"""The cloud configuration page and the products of the cloud selector."""

from __future__ import annotations

from decimal import Decimal

from engine.cloud.config import CONFIG_KEYS, CloudConfigService
from engine.cloud.models import Product, ProductType
from engine.cloud.services import ProductService
from tests.conftest import new_request
from tests.functional.test_admin_support import admin_login, form_to, text_of


def config(pyramid_request) -> dict:
    """The stored configuration, read afresh (the service caches what it has read)."""
    with new_request(pyramid_request.registry) as request:
        return request.find_service(CloudConfigService).all()


def test_every_config_key_is_on_the_page_with_its_description(testapp, demo_cloud):
    """Each key has its row, its description, and booleans are checkboxes."""
    admin_login(testapp)

    page = testapp.get("/admin/cloud/config")

    form = page.forms["config-form"]
    for key in CONFIG_KEYS:
        row = page.html.find(attrs={"data-key": key.name})
        assert key.description in row.get_text(), key.name
        field = form[key.name]
        if key.type is bool:
            assert field.__class__.__name__ == "Checkbox", key.name


def test_config_is_saved_with_unticked_checkboxes_as_false(testapp, demo_cloud, pyramid_request):
    """Unticking a checkbox stores false; numbers are stored as numbers."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/config").forms["config-form"]
    form["auto_provision"] = True
    form["public_register_enabled"] = False
    form["max_disk_size"] = "20000"

    page = form.submit().follow()

    assert "Configuration saved." in page
    values = config(pyramid_request)
    assert values["auto_provision"] is True
    assert values["public_register_enabled"] is False
    assert values["max_disk_size"] == 20000
    assert page.forms["config-form"]["public_register_enabled"].checked is False


def test_invalid_config_value_is_refused_with_the_field_named(testapp, demo_cloud,
                                                             pyramid_request):
    """A value the service refuses is named next to its field and nothing is saved."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/config").forms["config-form"]
    form["auto_provision"] = True
    form["max_disk_size"] = "lots"

    page = form.submit(status=400)

    error = text_of(page, "error-config-max_disk_size")
    assert error.startswith("Invalid input:")
    assert "max_disk_size" in error
    assert page.forms["config-form"]["max_disk_size"].value == "lots"
    assert config(pyramid_request)["auto_provision"] is False
    assert config(pyramid_request)["max_disk_size"] == 100000


def products_of(page, product_type: str) -> dict[str, str]:
    table = page.html.find("table", attrs={"data-type": product_type})
    if table is None:
        return {}
    return {row.find("td").get_text(): row["data-product"]
            for row in table.find("tbody").find_all("tr")}


def test_products_are_listed_per_type(testapp, demo_cloud):
    """The demo's products appear under their types."""
    admin_login(testapp)

    page = testapp.get("/admin/cloud/products")

    assert {"default", "linux-6.1"} <= set(products_of(page, "kernel"))
    assert "sim-vm" in products_of(page, "resource")


def test_product_is_added_repriced_disabled_and_removed(testapp, demo_cloud, pyramid_request):
    """A product goes through add, price change, disable and removal."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/products").forms["add-product"]
    form["product_type"], form["quantity"], form["price"] = "memory", "3333", "1.25"
    form["name"] = "1 GB"
    page = form.submit().follow()
    product_id = int(products_of(page, "memory")["3333"])

    price_form = form_to(page, f"/{product_id}/price")
    price_form["price"] = "2.5"
    page = price_form.submit().follow()
    form_to(page, f"/{product_id}/enabled").submit().follow()
    pyramid_request.dbsession.expire_all()
    product = pyramid_request.dbsession.get(Product, product_id)
    assert (product.type, product.price, product.enabled) == (ProductType.MEMORY,
                                                              Decimal("2.5"), False)

    page = testapp.get("/admin/cloud/products")
    form_to(page, f"/{product_id}/remove").submit().follow()
    assert product_id not in {p.id for p in pyramid_request.find_service(ProductService).list()}


def test_duplicate_product_is_refused_next_to_its_value(testapp, demo_cloud, pyramid_request):
    """A second product with the same type and value is refused at the value field."""
    admin_login(testapp)
    form = testapp.get("/admin/cloud/products").forms["add-product"]
    form["product_type"], form["quantity"], form["price"], form["name"] = (
        "kernel", "default", "3", "again")

    page = form.submit(status=400)

    error = text_of(page, "error-add-quantity")
    assert error.startswith("Invalid input:")
    assert "default" in error
    assert page.forms["add-product"]["name"].value == "again"


def test_invalid_price_is_refused_next_to_the_product(testapp, demo_cloud, pyramid_request):
    """A negative price is refused at that product's price field; the price stays."""
    admin_login(testapp)
    page = testapp.get("/admin/cloud/products")
    product_id = products_of(page, "kernel")["default"]
    price_form = form_to(page, f"/{product_id}/price")
    price_form["price"] = "-1"

    page = price_form.submit(status=400)

    error = text_of(page, f"error-price-{product_id}")
    assert error.startswith("Invalid input:")
    assert "price" in error
    pyramid_request.dbsession.expire_all()
    assert pyramid_request.dbsession.get(Product, int(product_id)).price == 0
