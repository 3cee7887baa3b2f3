"""Reading pages the way a user does: the text, and the errors beside a field."""
import re


def text(response):
    return response.get_data(as_text=True)


def error_beside(page, field_id):
    """The error messages in the field's own box (the form macro's div#field-<id>); page is HTML or a response."""
    html = page if isinstance(page, str) else text(page)
    start = html.find(f'id="field-{field_id}"')
    assert start != -1, f"no field {field_id} on the page"
    ends = [i for i in (html.find('<div class="field', start + 1), html.find("</form>", start)) if i != -1]
    return re.findall(r'<span class="error">(.*?)</span>', html[start:min(ends, default=len(html))])
